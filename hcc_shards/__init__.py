"""hcc-shards: DICOM CT + SEG collections to sharded Zarr v3 datasets, and a thin reader.

Importing this package (or ``hcc_shards.read``) never imports apache_beam, pydicom,
highdicom or scipy: the build stack lives in submodules that only the build imports.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
