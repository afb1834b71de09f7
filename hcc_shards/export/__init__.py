"""Exports of a built dataset to the formats training tools read: NIfTI and nnU-Net's raw layout.

Read with :mod:`hcc_shards.read`, written with SimpleITK (the ``export`` extra), through fsspec.
"""

from hcc_shards.export.nifti import export_nifti, nifti_bytes
from hcc_shards.export.nnunet import export_nnunet, nnunet_dataset_json

__all__ = ["export_nifti", "export_nnunet", "nifti_bytes", "nnunet_dataset_json"]
