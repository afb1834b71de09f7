"""The names of docs/FORMAT.md: every path, file, folder, array, attribute key and version number.

The writer (:mod:`hcc_shards.shards`), the reader (:mod:`hcc_shards.read`) and the commands take
these names from here and spell none of them. Standard library only: the reader imports it.
Paths are relative to a version root (``OUTPUT/versions/<config_hash>``) unless they say otherwise,
and use ``/`` whatever the storage. Section names in the docstrings are those of docs/FORMAT.md.
"""

from __future__ import annotations

__all__ = [
    "AGREEMENT_PNG",
    "ARRAY",
    "ATTRIBUTES",
    "CARD_FILE",
    "CASES_PNG",
    "CHUNK_KEY_PREFIX",
    "CLINICAL_FILE",
    "COHORT_PNG",
    "COMPLETE_DIR",
    "DATASET_FILE",
    "FEATURES_DIR",
    "FEATURES_FILE",
    "FOREGROUND_GROUP",
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "IMAGE_FILL",
    "IMAGE_LABEL",
    "INTENSITY_PNG",
    "LABELS_GROUP",
    "LATEST_FILE",
    "LEASE_FILE",
    "MANIFEST_FILE",
    "OME",
    "OME_VERSION",
    "PHASES_GROUP",
    "QC_DIR",
    "QUARANTINE_FILE",
    "READABLE_VERSIONS",
    "SURVIVAL_PNG",
    "TUMOR_SIZES_PNG",
    "V1_CASES_DIR",
    "V1_LABEL_ARRAY",
    "V1_MARKER_FILE",
    "VERSIONS_DIR",
    "ZARR_JSON",
    "array_path",
    "checksum_prefix",
    "features_path",
    "foreground_path",
    "image_path",
    "label_path",
    "labels_path",
    "latest_pointer",
    "marker_path",
    "metadata_path",
    "qc_path",
    "v1_case_path",
    "v1_marker_path",
    "version_path",
]

# -- versions ----------------------------------------------------------------------------------

FORMAT_VERSION = 2
"""Version of the on-disk contract that the writer writes (first lines of docs/FORMAT.md)."""
READABLE_VERSIONS: tuple[int, ...] = (1, FORMAT_VERSION)
"""Versions the reader reads: 1 (one group per case under ``cases/``) and the current one (one
image group per CT image, one label image per annotation under its ``labels/``)."""

# -- OUTPUT and the version root (section "Layout") --------------------------------------------

LATEST_FILE = "LATEST.json"
"""Pointer to the newest committed version, directly under OUTPUT; written last."""
LEASE_FILE = ".hcc-shards-lease.json"
"""Lease of the build that is writing OUTPUT now, directly under OUTPUT (section "Concurrent
builds"); absent when no build runs. Not part of any version: readers never look at it."""
VERSIONS_DIR = "versions"
"""Folder under OUTPUT holding one version root per build configuration."""
DATASET_FILE = "dataset.json"
"""Dataset-level metadata (section "dataset.json"); its presence marks the version committed."""
MANIFEST_FILE = "manifest.parquet"
"""One row per annotation (section "manifest.parquet columns")."""
QUARANTINE_FILE = "quarantine.parquet"
"""One row per input set aside (section "quarantine.parquet columns")."""
CLINICAL_FILE = "clinical.parquet"
"""Clinical table joined on patient_id (section "clinical.parquet", with ``--clinical``)."""
FEATURES_FILE = "features.parquet"
"""Radiomics features of every case (section "features.parquet", with ``--features``)."""
FEATURES_DIR = "features"
"""Folder of the per-case copies of the features (section "features.parquet")."""
CARD_FILE = "DATASET.md"
"""Dataset card generated from the built data."""
COMPLETE_DIR = "complete"
"""Folder of the image completion markers, outside every zarr group (section "Atomicity and resume")."""
IMAGES_DIR = "images"
"""Folder of the OME-Zarr image groups, one per stored CT image."""
QC_DIR = "qc"
"""Folder of the QC images."""
COHORT_PNG = f"{QC_DIR}/cohort.png"
"""Cohort histograms, written at commit."""
AGREEMENT_PNG = f"{QC_DIR}/agreement.png"
"""Dice of each non-manual annotation against its image's manual one, written at commit when there is a pair."""
SURVIVAL_PNG = f"{QC_DIR}/survival.png"
"""Kaplan-Meier curves, written at commit when the clinical table has the endpoints (section "clinical.parquet")."""
CASES_PNG = f"{QC_DIR}/cases.png"
"""Label volumes of every case, written at commit next to the cohort histograms."""
INTENSITY_PNG = f"{QC_DIR}/intensity.png"
"""HU range of every case, written at commit next to the cohort histograms."""
TUMOR_SIZES_PNG = f"{QC_DIR}/tumor_sizes.png"
"""Tumour volume per annotation by annotation source, written at commit next to the cohort histograms."""

# -- inside an image group (sections "Layout" and "Arrays") ------------------------------------

PHASES_GROUP = "phases"
"""Group of the phase channels in an image group (``phases/<n>``, docs/PHASES.md); absent without them."""
IMAGE_FILL = -1024
"""Fill value of the image arrays ``0`` and ``phases/<n>`` (section "Arrays"): air, in HU; also what
a phase channel holds outside its acquisition's field and what the reader pads with."""
ZARR_JSON = "zarr.json"
"""Zarr v3 metadata document of every group and array."""
ARRAY = "0"
"""The array of an image group (int16 HU) and of a label image (uint8): OME multiscales level 0."""
LABELS_GROUP = "labels"
"""Group of an image's label images, one per annotation."""
FOREGROUND_GROUP = "foreground"
"""Group of a label image's foreground location arrays, one per annotated label (section
"Foreground locations")."""
CHUNK_KEY_PREFIX = "c"
"""First key component of a chunk (or shard) object under its array: ``0/c/<i>/<j>/<k>``."""

# -- group attributes (section "Group attributes") ---------------------------------------------

ATTRIBUTES = "hcc_shards"
"""Attribute key of the image's and the annotation's own metadata."""
OME = "ome"
"""Attribute key of the OME-Zarr metadata."""
OME_VERSION = "0.5"
"""OME-Zarr version of the groups."""
IMAGE_LABEL = "image-label"
"""Key of the OME label metadata (colours, properties, source) inside a label image's ``ome``."""

# -- format version 1, read only ---------------------------------------------------------------

V1_CASES_DIR = "cases"
"""Version 1: folder of the case groups."""
V1_MARKER_FILE = "_COMPLETE.json"
"""Version 1: completion marker inside each case group (section "complete/<image_id>.json")."""
V1_LABEL_ARRAY = f"{LABELS_GROUP}/segmentation/{ARRAY}"
"""Version 1: the label array inside a case group."""


# -- paths -------------------------------------------------------------------------------------


def version_path(config_hash: str) -> str:
    """``versions/<config_hash>``: a version root, relative to OUTPUT (section "Layout")."""
    return f"{VERSIONS_DIR}/{config_hash}"


def latest_pointer(config_hash: str) -> dict[str, object]:
    """The content of ``LATEST.json`` naming the version ``config_hash`` (section "Layout")."""
    return {"format_version": FORMAT_VERSION, "version": config_hash, "path": version_path(config_hash)}


def image_path(image_id: str) -> str:
    """``images/<image_id>``: one image group (section "Layout"; the manifest's ``image_path``)."""
    return f"{IMAGES_DIR}/{image_id}"


def labels_path(image_id: str) -> str:
    """``images/<image_id>/labels``: the group of the image's label images (section "Layout")."""
    return f"{image_path(image_id)}/{LABELS_GROUP}"


def label_path(image_id: str, case_id: str) -> str:
    """``images/<image_id>/labels/<case_id>``: one annotation's label image (section "Layout"; the
    manifest's ``path``)."""
    return f"{labels_path(image_id)}/{case_id}"


def foreground_path(group: str, label_name: str) -> str:
    """``<group>/foreground/<label_name>``: a foreground location array of the label image (or version 1
    case group) ``group`` (section "Foreground locations")."""
    return f"{group}/{FOREGROUND_GROUP}/{label_name}"


def array_path(group: str) -> str:
    """``<group>/0``: the array of an image group or label image (section "Arrays")."""
    return f"{group}/{ARRAY}"


def metadata_path(node: str) -> str:
    """``<node>/zarr.json``: the metadata document of a group or array (``zarr.json`` for the root)."""
    node = node.strip("/")
    return f"{node}/{ZARR_JSON}" if node else ZARR_JSON


def marker_path(image_id: str) -> str:
    """``complete/<image_id>.json``: the completion marker of one image (section "Atomicity and resume")."""
    return f"{COMPLETE_DIR}/{image_id}.json"


def qc_path(case_id: str) -> str:
    """``qc/<case_id>.png``: the QC image of one annotation, written before its image's marker (section "Layout")."""
    return f"{QC_DIR}/{case_id}.png"


def features_path(case_id: str) -> str:
    """``features/<case_id>.parquet``: one case's features, written before its marker (section "features.parquet")."""
    return f"{FEATURES_DIR}/{case_id}.parquet"


def v1_case_path(case_id: str) -> str:
    """Version 1: ``cases/<case_id>``, the group of one case."""
    return f"{V1_CASES_DIR}/{case_id}"


def v1_marker_path(case_id: str) -> str:
    """Version 1: ``cases/<case_id>/_COMPLETE.json``, the completion marker of one case."""
    return f"{v1_case_path(case_id)}/{V1_MARKER_FILE}"


def checksum_prefix(format_version: int = FORMAT_VERSION) -> bytes:
    """The first bytes hashed into a case checksum of that version (section "complete/<image_id>.json")."""
    return f"hcc-shards-case-v{int(format_version)}\0".encode()
