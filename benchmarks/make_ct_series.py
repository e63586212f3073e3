#!/usr/bin/env python3
"""Write a synthetic but standards-shaped CT series: one file per slice, shuffled names.

usage: python benchmarks/make_ct_series.py OUT_DIR [--slices N] [--size N] [--seed S] [--reverse]

Geometry: axial, 0.7 mm pixels, 1.25 mm slices, z rising from -100 mm; stored uint16 with
RescaleIntercept -1024 (values in HU). With --reverse, InstanceNumber runs opposite to z.
For benchmarks: 300 slices of 512x512 make 150 MB. Needs only numpy and pydicom.
"""

import argparse
import os
import random

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def phantom(n, size, rng):
    z, y, x = np.mgrid[0:n, 0:size, 0:size].astype(np.float32)
    cz, cy, cx = n / 2, size / 2, size / 2
    vol = np.full((n, size, size), -1000, np.float32)  # air
    body = ((x - cx) / (0.45 * size)) ** 2 + ((y - cy) / (0.35 * size)) ** 2 <= 1
    vol[body] = 40  # soft tissue
    for k, (ox, oy, r, hu) in enumerate([(-0.18, 0, 0.12, -800), (0.18, 0, 0.12, -800),
                                         (0, 0.22, 0.05, 700), (0.05, -0.1, 0.04, 120)]):
        m = ((x - cx - ox * size) ** 2 + (y - cy - oy * size) ** 2 <= (r * size) ** 2) \
            & (np.abs(z - cz) < n * (0.45 - 0.05 * k))
        vol[m] = hu
    vol += rng.normal(0, 12, vol.shape).astype(np.float32)
    return vol


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reverse", action="store_true", help="InstanceNumber runs opposite to z")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    vol = phantom(a.slices, a.size, rng)
    slope, intercept = 1.0, -1024.0
    stored = np.clip(np.round((vol - intercept) / slope), 0, 4095).astype(np.uint16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    names = list(range(a.slices))
    random.Random(a.seed).shuffle(names)
    for i in range(a.slices):
        z = -100.0 + i * 1.25
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.PatientName = "Phantom^Bench"
        ds.PatientID = "BENCH001"
        ds.PatientBirthDate = "19700101"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.StudyDate = "20260101"
        ds.Modality = "CT"
        ds.SeriesNumber = 2
        ds.InstanceNumber = (a.slices - i) if a.reverse else (i + 1)
        ds.ImagePositionPatient = [-179.2, -179.2, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.25
        ds.Rows = ds.Columns = a.size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.PixelData = stored[i].tobytes()
        ds.save_as(os.path.join(a.out, f"IM{names[i]:05d}.dcm"), enforce_file_format=True)


if __name__ == "__main__":
    main()
