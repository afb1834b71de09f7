"""DICOM-SEG as dcmqi writes them: every real SEG of HCC-TACE-Seg in IDC came from dcmqi.

Two ways to make one:

- :func:`dcmqi_seg`: highdicom builds the SEG, then :func:`as_dcmqi_writes` gives it dcmqi's
  habits: sequences and items of undefined length, Manufacturer QIICR, dcmqi's model name and
  SeriesNumber 300 (highdicom already omits empty frames, as dcmqi does). Fast, no subprocess.
- :func:`run_itkimage2segimage`: dcmqi's own converter (``pip install dcmqi``) from a label image
  (NRRD written with SimpleITK) and a folder of CT slices, as the collection's SEGs were made.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from hcc_shards.geometry import Geometry
from hcc_shards.synth.ct import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from hcc_shards.synth.seg import freeze_highdicom_values

DCMQI_MANUFACTURER = "QIICR"
DCMQI_MODEL = "git@github.com:QIICR/dcmqi.git"
"""ManufacturerModelName of the collection's SEGs (IDC index)."""
DCMQI_SOFTWARE_VERSION = "506306a"
SEG_SERIES_NUMBER = 300
"""SeriesNumber of every SEG of the collection, manual and AI."""
MANUAL_DESCRIPTION = "Segmentation"
AIMI_DESCRIPTION = "AIMI liver-tumor AI segmentation"
AIMI_CORRECTED_DESCRIPTION = "AIMI liver-tumor radiologist 7 corrected segmentation"
"""The radiologist-corrected AIMI SEGs' SeriesDescription (one pattern for all 25 in the index)."""

_NEOPLASM = Code("108369006", "SCT", "Neoplasm")


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: its label, codes and how it was made; ``channel`` indexes the phantom's masks."""

    label: str
    category: Code
    property_type: Code
    algorithm_type: str
    """'MANUAL', 'SEMIAUTOMATIC' or 'AUTOMATIC'."""
    algorithm_name: str
    channel: int
    """Mask channel: 0 liver, 1 mass, 2 portal vein, 3 aorta (hcc_shards.synth.phantom)."""


def manual_segments() -> tuple[SegmentSpec, ...]:
    """The manual SEGs' four segments, in the collection's order."""
    kind = "SEMIAUTOMATIC"
    return (
        SegmentSpec("Liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver, kind, "AMIRA", 0),
        SegmentSpec("Mass", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Mass, kind, "AMIRA", 1),
        SegmentSpec("Portal vein", codes.SCT.AnatomicalStructure, codes.SCT.PortalVein, kind, "AMIRA", 2),
        SegmentSpec(
            "Abdominal aorta", codes.SCT.AnatomicalStructure, codes.SCT.AbdominalAorta, kind, "AMIRA", 3
        ),
    )


def aimi_segments(corrected: bool = False) -> tuple[SegmentSpec, ...]:
    """The AIMI SEGs' two segments: liver and tumour, AUTOMATIC (nnU-Net), or corrected by hand."""
    kind = "SEMIAUTOMATIC" if corrected else "AUTOMATIC"
    name = "BAMF-Liver-Tumor-nnUNet"
    return (
        SegmentSpec("Liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver, kind, name, 0),
        SegmentSpec("Tumor", codes.SCT.MorphologicallyAbnormalStructure, _NEOPLASM, kind, name, 1),
    )


def _descriptions(segments: Sequence[SegmentSpec]) -> list[hd.seg.SegmentDescription]:
    family = codes.cid7162.ArtificialIntelligence
    out = []
    for n, s in enumerate(segments, start=1):
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues[s.algorithm_type]
        identification = None
        if algorithm_type is not hd.seg.SegmentAlgorithmTypeValues.MANUAL:
            fam = family if s.algorithm_type == "AUTOMATIC" else codes.cid7162.ManualProcessing
            identification = hd.AlgorithmIdentificationSequence(
                name=s.algorithm_name, version="1", family=fam
            )
        out.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=s.label,
                segmented_property_category=s.category,
                segmented_property_type=s.property_type,
                algorithm_type=algorithm_type,
                algorithm_identification=identification,
            )
        )
    return out


def dcmqi_seg(
    sources: Sequence[Dataset],
    masks: np.ndarray,
    segments: Sequence[SegmentSpec],
    *,
    series_uid: str,
    sop_uid: str,
    series_description: str,
    date: str,
    seed: int,
) -> Dataset:
    """A BINARY SEG over ``sources`` (CT headers in array order) as dcmqi would write it.

    ``masks`` is bool (z, y, x, channels) on the sources' grid; each segment takes its channel.
    Frames without foreground are omitted. ``date`` (YYYYMMDD) and ``seed`` fix every date and
    derived UID, so the same arguments give the same bytes.
    """
    if masks.ndim != 4 or masks.shape[0] != len(sources):
        raise ValueError(f"masks must be (z, y, x, channels) with z = {len(sources)}, got {masks.shape}")
    pixels = np.stack([masks[..., s.channel] for s in segments], axis=-1).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = hd.seg.Segmentation(
            source_images=list(sources),
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_descriptions(segments),
            series_instance_uid=series_uid,
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=DCMQI_MANUFACTURER,
            manufacturer_model_name=DCMQI_MODEL,
            software_versions=DCMQI_SOFTWARE_VERSION,
            device_serial_number="0",
            content_description="Image segmentation",
            content_label="SEGMENTATION",
            content_creator_name="dcmqi",
            omit_empty_frames=True,
            series_description=series_description,
            content_date=date,
            content_time="120000",
            series_date=date,
            series_time="120000",
        )
    seg.InstanceCreationDate = date
    seg.InstanceCreationTime = "120000"
    seg.BodyPartExamined = "LIVER"
    seg.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    seg.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    freeze_highdicom_values(seg, seed, sop_uid, f"{date}120000")
    return as_dcmqi_writes(seg)


def as_dcmqi_writes(seg: Dataset) -> Dataset:
    """``seg`` with dcmqi's encoding habits: every sequence and item of undefined length, QIICR."""
    seg.Manufacturer = DCMQI_MANUFACTURER
    seg.ManufacturerModelName = DCMQI_MODEL
    seg.SoftwareVersions = DCMQI_SOFTWARE_VERSION
    seg.SeriesNumber = SEG_SERIES_NUMBER

    def visit(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
                    visit(item)

    # highdicom puts shared objects (coded concepts) into the SEG's sequences: flag copies, or every
    # later SEG that uses them would be written with undefined lengths too.
    for elem in seg:
        if elem.VR == "SQ":
            elem.value = [copy.deepcopy(item) for item in elem.value]
    visit(seg)
    return seg


# -- dcmqi's own converter ---------------------------------------------------------------


def itkimage2segimage() -> str | None:
    """Path of dcmqi's ``itkimage2segimage`` next to this interpreter or on PATH, else None."""
    beside = Path(sys.executable).parent / "itkimage2segimage"
    return str(beside) if beside.exists() else shutil.which("itkimage2segimage")


def dcmqi_metadata(segments: Sequence[SegmentSpec], series_description: str) -> dict:
    """dcmqi's JSON metadata (the ``--inputMetadata`` file): label value n is segment n."""

    def code(c: Code) -> dict[str, str]:
        return {"CodeValue": c.value, "CodingSchemeDesignator": c.scheme_designator, "CodeMeaning": c.meaning}

    return {
        "ContentCreatorName": "dcmqi",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": series_description,
        "SeriesNumber": str(SEG_SERIES_NUMBER),
        "InstanceNumber": "1",
        "BodyPartExamined": "LIVER",
        "segmentAttributes": [
            [
                {
                    "labelID": n,
                    "SegmentLabel": s.label,
                    "SegmentDescription": s.label,
                    "SegmentAlgorithmType": s.algorithm_type,
                    **({"SegmentAlgorithmName": s.algorithm_name} if s.algorithm_type != "MANUAL" else {}),
                    "SegmentedPropertyCategoryCodeSequence": code(s.category),
                    "SegmentedPropertyTypeCodeSequence": code(s.property_type),
                    "recommendedDisplayRGBValue": [128, 174, 128],
                }
                for n, s in enumerate(segments, start=1)
            ]
        ],
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "Image segmentation",
    }


def run_itkimage2segimage(
    labels: np.ndarray,
    geometry: Geometry,
    ct_files: Sequence[str | Path],
    segments: Sequence[SegmentSpec],
    out: str | Path,
    *,
    series_description: str = MANUAL_DESCRIPTION,
    workdir: str | Path,
    timeout_s: float = 600.0,
) -> Path:
    """Write ``labels`` (uint8 (z, y, x) on ``geometry``, value n = segment n) as a SEG with dcmqi.

    The label image goes to NRRD through SimpleITK with the CT's LPS geometry; dcmqi reads the CT
    slices and writes the SEG at ``out``. Raises ``FileNotFoundError`` without dcmqi installed and
    ``RuntimeError`` with dcmqi's output when it fails.
    """
    import SimpleITK as sitk

    tool = itkimage2segimage()
    if tool is None:
        raise FileNotFoundError("dcmqi's itkimage2segimage is not installed (pip install dcmqi)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.astype(np.uint8)))
    # SimpleITK orders axes (x, y, z); Geometry (z, y, x).
    image.SetSpacing([float(v) for v in geometry.spacing[::-1]])
    image.SetOrigin([float(v) for v in geometry.origin])
    image.SetDirection([float(v) for v in geometry.direction[:, ::-1].ravel()])
    nrrd = work / "labels.nrrd"
    sitk.WriteImage(image, str(nrrd))
    meta = work / "meta.json"
    meta.write_text(json.dumps(dcmqi_metadata(segments, series_description), indent=1))
    cmd = [
        tool,
        "--inputImageList",
        str(nrrd),
        "--inputDICOMList",
        ",".join(str(f) for f in ct_files),
        "--outputDICOM",
        str(out),
        "--inputMetadata",
        str(meta),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not Path(out).exists():
        raise RuntimeError(
            f"itkimage2segimage exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return Path(out)
