# Every optional part of terraform/ switched on, so that checkov and our rules see all of it
# (resources behind count = 0 are not evaluated otherwise). Used only by tests/infra.
project_id          = "hcc-shards-ci"
region              = "us-central1"
create_input_mirror = true
enable_dataproc     = true
dataproc_spark_env  = true
launch_job          = true
job_input           = "gs://hcc-shards-ci-hcc-shards-input/hcc-tace-seg"
kms_key_name        = "projects/hcc-shards-ci/locations/us-central1/keyRings/hcc-shards/cryptoKeys/data"
extra_input_buckets = ["hcc-shards-ci-dicom"]
launcher_members    = ["group:imaging-ml@example.org"]
job_parameters = {
  spacing = "auto"
  limit   = "10"
}
