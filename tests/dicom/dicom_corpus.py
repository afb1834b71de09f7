"""The public test corpus (tests/data) of the DICOM core tests: paths, complete pairs, helpers.

A module of its own, not conftest.py: test modules import these names, and other test folders
have a conftest.py too, so ``from conftest import ...`` would find whichever was loaded last.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.labels import AORTA, LIVER, PORTAL_VEIN, TUMOR

DATA = Path(__file__).resolve().parents[1] / "data"
SEGS = DATA / "dcmqi" / "data" / "segmentations"
HD = DATA / "highdicom" / "data" / "test_files"
CT2 = DATA / "pydicom" / "src" / "pydicom" / "data" / "test_files" / "dicomdirtests" / "77654033" / "CT2"

# The public SEGs annotate bone, tissue, vessels: map their codes onto our labels so that every
# complete pair of tests/data/README.md decodes (the mapping is configurable by design).
PUBLIC_CODES = (
    ("SCT:272673000", LIVER),  # Bone
    ("SCT:421060004", TUMOR),  # Spine
    ("SCT:85756007", LIVER),  # Tissue
    ("SCT:51114001", AORTA),  # Artery
    ("SCT:20982000", PORTAL_VEIN),  # Capillary
    ("SCT:79654002", TUMOR),  # Edema
    ("SCT:29092000", PORTAL_VEIN),  # Vein
)

COMPLETE_PAIRS: dict[str, list[Path]] = {
    "liver": [SEGS / "liver.dcm", *sorted((SEGS / "ct-3slice").glob("*.dcm"))],
    "partial_overlaps": [SEGS / "partial_overlaps.dcm", *sorted((SEGS / "ct-3slice").glob("*.dcm"))],
    "23x38x3": [SEGS / "23x38x3" / "seg" / "label.seg", *sorted((SEGS / "23x38x3" / "image").glob("*.dcm"))],
    "24x38x3": [SEGS / "24x38x3" / "seg" / "label.seg", *sorted((SEGS / "24x38x3" / "image").glob("*.dcm"))],
    "labelmap_noppv": [
        SEGS / "sparse-labelmap-noppv.dcm",
        *sorted((SEGS / "24x38x3" / "image").glob("*.dcm")),
    ],
    "labelmap_ppv5": [SEGS / "sparse-labelmap-ppv5.dcm", *sorted((SEGS / "24x38x3" / "image").glob("*.dcm"))],
    "hd_binary": [HD / "seg_image_ct_binary.dcm", *sorted(CT2.iterdir())],
    "hd_overlap": [HD / "seg_image_ct_binary_overlap.dcm", *sorted(CT2.iterdir())],
    "hd_fractional": [HD / "seg_image_ct_binary_fractional.dcm", *sorted(CT2.iterdir())],
    "hd_true_fractional": [HD / "seg_image_ct_true_fractional.dcm", *sorted(CT2.iterdir())],
    "hd_single_frame": [HD / "seg_image_ct_binary_single_frame.dcm", HD / "ct_image.dcm"],
}
"""The complete CT/SEG pairs listed in tests/data/README.md: SEG first, then its CT files."""


def headers_of(paths: list[Path], corpus: dict[str, InstanceHeader]) -> list[InstanceHeader]:
    return [corpus[str(p.relative_to(DATA))] for p in paths]


def by_patient(headers: list[InstanceHeader]) -> dict[str, list[InstanceHeader]]:
    groups: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        groups[h.patient_id].append(h)
    return dict(groups)
