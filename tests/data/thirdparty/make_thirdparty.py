"""Make the third-party annotation objects vendored here, and check ours with those libraries.

pydicom-seg and rt-utils pin numpy < 2 / OpenCV, so they cannot live in the project's
environment: this script runs in a throw-away venv (see README.md). It is self-contained
(pydicom + numpy only, besides the library it drives) so that its truth is not ours.

    python make_thirdparty.py make OUT        # CT + SEG (pydicom-seg) + RTSTRUCT (rt-utils)
    python make_thirdparty.py check CT SEG CT_SQUARE RT  # ours, read by those libraries

The CT has fixed UIDs so that the objects written against it reference it for good.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SHAPE = (8, 32, 32)  # (slice, row, column)
SPACING = (2.5, 0.9, 0.8)  # mm: slice step, row spacing, column spacing
#: rt-utils swaps PixelSpacing's row and column spacings (qurit/rt-utils#92, open): its
#: structure sets are made on a CT of square pixels, where that does not show
SQUARE = (2.5, 0.8, 0.8)
ORIGIN = (-14.0, -12.0, 40.0)  # LPS of the first slice's first pixel
ROOT = "2.25.1532809776421"  # fixed UID root (UUID-derived "2.25." form)
NAMES = {1: "ball", 2: "ring"}


def truth() -> np.ndarray:
    """The labels every object here encodes: a ball (1) and a ring with a hole (2)."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    lab = np.zeros(SHAPE, np.uint8)
    lab[(z - 3) ** 2 * 6 + (y - 10) ** 2 + (x - 11) ** 2 <= 36] = 1
    r2 = (y - 21) ** 2 + (x - 21) ** 2
    lab[(r2 <= 36) & (r2 > 6) & (z >= 2) & (z <= 6)] = 2
    return lab


def write_ct(folder: str, spacing=SPACING, root: str = ROOT) -> list[str]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    os.makedirs(folder, exist_ok=False)
    z, y, x = np.indices(SHAPE)
    hu = (-1000 + 40 * x + 10 * y + 5 * z).astype(np.int16)
    files = []
    for k in range(SHAPE[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.3.{k + 1}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{root}.3.{k + 1}"
        ds.PatientName, ds.PatientID = "Thirdparty^Phantom", "TP001"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{ROOT}.1", f"{root}.2"
        ds.FrameOfReferenceUID = f"{ROOT}.4"
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, k + 1
        ds.Manufacturer = "make_thirdparty.py"
        ds.SeriesDescription = "third-party phantom"
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + spacing[0] * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.PixelData = hu[k].tobytes()
        path = os.path.join(folder, f"CT{k + 1:02d}.dcm")
        ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2 (pydicom-seg's)
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return files


def write_pydicom_seg(ct_files: list[str], out: str) -> None:
    import pydicom
    import pydicom_seg
    import SimpleITK as sitk

    meta = {"ContentCreatorName": "Reader^One", "ClinicalTrialSeriesID": "1",
            "ClinicalTrialTimePointID": "1", "SeriesDescription": "pydicom-seg SEG",
            "SeriesNumber": "300", "InstanceNumber": "1", "BodyPartExamined": "",
            "segmentAttributes": [[{
                "labelID": n, "SegmentLabel": name, "SegmentDescription": name,
                "SegmentAlgorithmType": "MANUAL",
                "SegmentedPropertyCategoryCodeSequence": {
                    "CodeValue": "91723000", "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Anatomical Structure"},
                "SegmentedPropertyTypeCodeSequence": {
                    "CodeValue": "10200004", "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Liver"},
                "recommendedDisplayRGBValue": [[216, 101, 79], [128, 174, 128]][n - 1]}
                for n, name in NAMES.items()]]}
    template = pydicom_seg.template.from_dcmqi_metainfo(json.loads(json.dumps(meta)))
    img = sitk.GetImageFromArray(truth())  # (slice, row, column) -> ITK (x, y, z)
    img.SetOrigin(ORIGIN)
    img.SetSpacing(SPACING[::-1])
    writer = pydicom_seg.MultiClassWriter(template=template, inplane_cropping=False,
                                          skip_empty_slices=True, skip_missing_segment=False)
    dcm = writer.write(img, [pydicom.dcmread(f) for f in ct_files])
    dcm.save_as(out)


def write_rt_utils(ct_folder: str, out: str) -> None:
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(dicom_series_path=ct_folder)
    lab = truth()
    for n, name in NAMES.items():
        mask = np.transpose(lab == n, (1, 2, 0))  # rt-utils: (row, column, slice)
        rt.add_roi(mask=mask, name=name, color=[[255, 0, 0], [0, 255, 0]][n - 1])
    rt.save(out)


def check(ct_folder: str, seg: str, square_folder: str, rt: str) -> None:
    """Read SEG/RTSTRUCT written by napari-dicomtools (on ``ct`` and ``ct_square``) with
    pydicom-seg and rt-utils."""
    import pydicom
    import pydicom_seg
    import SimpleITK as sitk
    from rt_utils import RTStructBuilder

    lab = truth()
    result = pydicom_seg.SegmentReader().read(pydicom.dcmread(seg))
    for n in NAMES:
        img = result.segment_image(n)
        arr = sitk.GetArrayFromImage(img).astype(bool)
        # pydicom-seg crops to the frames present: place by origin
        k0 = int(round((img.GetOrigin()[2] - ORIGIN[2]) / SPACING[0]))
        full = np.zeros(SHAPE, bool)
        full[k0:k0 + arr.shape[0]] = arr
        assert np.allclose(img.GetOrigin()[:2], ORIGIN[:2], atol=1e-3), img.GetOrigin()
        assert np.array_equal(full, lab == n), f"pydicom-seg: segment {n} differs"
        print(f"pydicom-seg reads segment {n} ({NAMES[n]}): identical")
    rts = RTStructBuilder.create_from(dicom_series_path=square_folder, rt_struct_path=rt)
    for n, name in NAMES.items():
        mask = np.transpose(rts.get_roi_mask_by_name(name), (2, 0, 1))
        inter = np.logical_and(mask, lab == n).sum()
        dice = 2 * inter / (mask.sum() + (lab == n).sum())
        # rt-utils rounds each vertex to a pixel and fills inclusively (cv2.fillPoly): a
        # contour drawn between pixel centres (ours, plastimatch's) grows by one boundary
        # ring there. What it reads must hold every voxel and stay within that ring.
        import cv2  # rt-utils' own dependency

        ring = np.stack([cv2.dilate((p == n).astype(np.uint8), np.ones((3, 3), np.uint8))
                         for p in lab]).astype(bool)
        print(f"rt-utils reads ROI {name}: Dice {dice:.4f}, voxels {mask.sum()} vs "
              f"{(lab == n).sum()}, all of them: {inter == (lab == n).sum()}, within one "
              f"pixel: {not np.any(mask & ~ring)}")
        assert inter == (lab == n).sum() and not np.any(mask & ~ring)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "make":
        out = args[0]
        files = write_ct(os.path.join(out, "ct"))
        write_pydicom_seg(files, os.path.join(out, "seg_pydicom_seg.dcm"))
        write_ct(os.path.join(out, "ct_square"), SQUARE, ROOT + ".9")
        write_rt_utils(os.path.join(out, "ct_square"),
                       os.path.join(out, "rtstruct_rt_utils.dcm"))
    elif cmd == "check":
        check(*args)
    else:
        raise SystemExit(__doc__)
