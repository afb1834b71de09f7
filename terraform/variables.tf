# ---------------------------------------------------------------------------------------------
# Project and naming
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project that holds every resource of this stack."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 characters, lower-case letters, digits and hyphens, starting with a letter (not the project name or number)."
  }
}

variable "region" {
  description = "Region of the Dataflow jobs, the subnet, the Artifact Registry repository and (by default) the buckets, e.g. us-central1. Choose the region of the input bucket: gs://idc-open-data is multi-region US, so a US region avoids cross-continent egress."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Compute Engine region name such as us-central1 or europe-west4."
  }
}

variable "bucket_location" {
  description = "Location of the buckets; null means the same as region. A multi-region (US, EU) is possible but costs more and is slower for the workers than a bucket in their region."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_location == null || can(regex("^([A-Za-z]+-[A-Za-z]+[0-9]|US|EU|ASIA|NAM4|EUR4|ASIA1)$", var.bucket_location))
    error_message = "bucket_location must be a region (us-central1), a multi-region (US, EU, ASIA) or a dual-region (NAM4, EUR4, ASIA1)."
  }
}

variable "name_prefix" {
  description = "Short prefix of every resource name (buckets add the project ID in front to be globally unique)."
  type        = string
  default     = "hcc-shards"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,13}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-15 characters of lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen (it becomes part of service account IDs, which are limited to 30 characters)."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels (keys and values: lower-case letters, digits, '_' and '-')."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Each label key must match ^[a-z][a-z0-9_-]{0,62}$ and each value ^[a-z0-9_-]{0,63}$."
  }
}

variable "enable_apis" {
  description = "Enable the Google APIs this stack uses (Dataflow, Compute Engine, Cloud Storage, Artifact Registry, Cloud KMS when a key is given, Dataproc when the cluster is enabled). APIs are left enabled on destroy."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------

variable "create_input_mirror" {
  description = "Create a private bucket to mirror the input DICOM into (e.g. a copy of one IDC collection). Not needed to read gs://idc-open-data directly, which is public."
  type        = bool
  default     = false
}

variable "extra_input_buckets" {
  description = "Names of existing buckets in this project that hold input DICOM; the worker service account gets read-only access (roles/storage.objectViewer) on each. Public buckets such as idc-open-data need no entry."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for b in var.extra_input_buckets : can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", b)) && !startswith(b, "gs://")])
    error_message = "extra_input_buckets must be bucket names without the gs:// scheme, e.g. my-dicom-bucket."
  }
}

variable "temp_retention_days" {
  description = "Objects in the Dataflow temp bucket are deleted this many days after creation."
  type        = number
  default     = 7

  validation {
    condition     = var.temp_retention_days >= 1 && var.temp_retention_days <= 90 && floor(var.temp_retention_days) == var.temp_retention_days
    error_message = "temp_retention_days must be a whole number of days between 1 and 90."
  }
}

variable "staging_retention_days" {
  description = "Per-job staging files (pipeline protos, pickled sessions) under staging/ are deleted this many days after creation; flex template specs under templates/ are kept."
  type        = number
  default     = 30

  validation {
    condition     = var.staging_retention_days >= 1 && var.staging_retention_days <= 365 && floor(var.staging_retention_days) == var.staging_retention_days
    error_message = "staging_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "output_noncurrent_retention_days" {
  description = "Overwritten or deleted objects of the dataset bucket (kept by versioning) are deleted this many days after they became noncurrent."
  type        = number
  default     = 30

  validation {
    condition     = var.output_noncurrent_retention_days >= 1 && var.output_noncurrent_retention_days <= 3650 && floor(var.output_noncurrent_retention_days) == var.output_noncurrent_retention_days
    error_message = "output_noncurrent_retention_days must be a whole number of days between 1 and 3650."
  }
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete non-empty buckets. Keep false for the dataset bucket of a real project."
  type        = bool
  default     = false
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (CMEK) for the buckets, the Artifact Registry repository, the Dataflow job state and the Dataproc disks: projects/P/locations/L/keyRings/R/cryptoKeys/K, in the same location as the resources. null means Google-managed encryption."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must look like projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY (no /cryptoKeyVersions/ suffix)."
  }
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "subnet_cidr" {
  description = "Primary IPv4 range of the worker subnet. A /20 gives 4,092 worker addresses."
  type        = string
  default     = "10.42.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && tonumber(split("/", var.subnet_cidr)[1]) <= 26
    error_message = "subnet_cidr must be an IPv4 CIDR block of at least /26, e.g. 10.42.0.0/20."
  }
}

# ---------------------------------------------------------------------------------------------
# Image and flex template
# ---------------------------------------------------------------------------------------------

variable "image_name" {
  description = "Name of the container image inside the Artifact Registry repository."
  type        = string
  default     = "hcc-shards"

  validation {
    condition     = can(regex("^[a-z0-9]+([._-][a-z0-9]+)*$", var.image_name))
    error_message = "image_name must be a valid image name: lower-case letters and digits, separated by '.', '_' or '-'."
  }
}

variable "image_tag" {
  description = "Tag of the image that the flex template and the workers run (the launch script uses the package version plus the git commit). Pushing a new image under the same tag does not change a running job."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'."
  }
}

# ---------------------------------------------------------------------------------------------
# The Dataflow job
# ---------------------------------------------------------------------------------------------

variable "launch_job" {
  description = "Create the flex template job. Leave false for the first apply: push the image first (deploy/launch.sh image), then apply again with true."
  type        = bool
  default     = false
}

variable "job_name" {
  description = "Name of the Dataflow job."
  type        = string
  default     = "hcc-shards-build"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.job_name))
    error_message = "job_name must match ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ (Dataflow job name rules)."
  }
}

variable "job_input" {
  description = "INPUT of the build: a gs:// prefix or object URL, several separated by commas, or @gs://BUCKET/LIST.txt, a text file with one gs:// prefix or object URL per line (e.g. the series of HCC-TACE-Seg in gs://idc-open-data, made with idc-index; docs/RUN_ON_DATAFLOW.md). Never the root of gs://idc-open-data: the build lists everything under each prefix. Required when launch_job is true."
  type        = string
  default     = null

  validation {
    condition = var.job_input == null || try(alltrue([
      for entry in split(",", var.job_input) : can(regex("^@?gs://[a-z0-9][-_.a-z0-9]*[a-z0-9]/.+", entry))
    ]), false)
    error_message = "job_input must be gs:// URLs with a path inside the bucket (gs://BUCKET/PREFIX), comma-separated, or @gs://BUCKET/LIST.txt: Dataflow workers read from Cloud Storage, and a whole public bucket is far too large to list."
  }
}

variable "job_output_path" {
  description = "Path inside the dataset bucket where the build writes (OUTPUT = gs://<dataset bucket>/<job_output_path>)."
  type        = string
  default     = "hcc-tace-seg"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/-]*$", var.job_output_path)) && !endswith(var.job_output_path, "/")
    error_message = "job_output_path must be a relative object path without a leading or trailing slash, e.g. hcc-tace-seg."
  }
}

variable "job_parameters" {
  description = "Further flex template parameters (pipeline flags without the leading --, as declared in deploy/metadata.json), e.g. { spacing = \"auto\", limit = \"5\" }. input and output are set from job_input and job_output_path."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.job_parameters), "input") && !contains(keys(var.job_parameters), "output")
    error_message = "Set input and output through job_input and job_output_path, not job_parameters."
  }
}

variable "worker_machine_type" {
  description = "Worker machine type. One Python SDK process per vCPU each holds about one case at a time (a few hundred MB for a 512x512x185 CT), so 4 GB per vCPU (n2-standard) leaves ample headroom; see docs/RUN_ON_DATAFLOW.md."
  type        = string
  default     = "n2-standard-4"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*-(standard|highmem|highcpu|custom)-[0-9]+(-[0-9]+)?$", var.worker_machine_type))
    error_message = "worker_machine_type must be a Compute Engine machine type such as n2-standard-4, n2-highmem-4 or e2-standard-8."
  }
}

variable "worker_disk_size_gb" {
  description = "Boot disk of each worker in GB: the image (a few GB) plus per-case scratch; batch shuffle runs in the Dataflow Shuffle service, not on this disk."
  type        = number
  default     = 50

  validation {
    condition     = var.worker_disk_size_gb >= 30 && var.worker_disk_size_gb <= 2000
    error_message = "worker_disk_size_gb must be between 30 and 2000."
  }
}

variable "max_workers" {
  description = "Upper bound of horizontal autoscaling (workers)."
  type        = number
  default     = 20

  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 1000 && floor(var.max_workers) == var.max_workers
    error_message = "max_workers must be a whole number between 1 and 1000."
  }
}

variable "num_workers" {
  description = "Initial number of workers."
  type        = number
  default     = 2

  validation {
    condition     = var.num_workers >= 1 && var.num_workers <= 1000 && floor(var.num_workers) == var.num_workers
    error_message = "num_workers must be a whole number between 1 and 1000."
  }
}

variable "launcher_machine_type" {
  description = "Machine type of the flex template launcher VM, which only builds the job graph."
  type        = string
  default     = "n2-standard-2"
}

variable "launcher_members" {
  description = "Principals (user:, group: or serviceAccount:) allowed to launch jobs as the worker service account (roles/iam.serviceAccountUser on that account only). The launcher also needs roles/dataflow.developer on the project, granted outside this stack."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.launcher_members : can(regex("^(user|group|serviceAccount):[^@]+@[^@]+$", m))])
    error_message = "launcher_members must be user:EMAIL, group:EMAIL or serviceAccount:EMAIL (allUsers and allAuthenticatedUsers are not accepted)."
  }
}

# ---------------------------------------------------------------------------------------------
# Optional Dataproc cluster: the native Spark engine, or Beam's portable runner on Spark / Flink
# ---------------------------------------------------------------------------------------------

variable "enable_dataproc" {
  description = "Create a Dataproc cluster to run the build on Spark (the native engine with dataproc_spark_env, or Beam's portable runner on Spark or Flink); see docs/RUN_ON_SPARK.md."
  type        = bool
  default     = false
}

variable "dataproc_spark_env" {
  description = "Install the native Spark engine's Python environment (CPython 3.12, hcc-shards and its locked dependencies) on every Dataproc node from gs://<staging bucket>/dataproc/spark-env, staged beforehand with deploy/stage_spark_env.sh, and make its interpreter Spark's Python (spark.pyspark.python). Cluster creation fails if nothing was staged there."
  type        = bool
  default     = false
}

variable "dataproc_image_version" {
  description = "Dataproc image version. 2.2 ships Spark 3.5 (Java 11), which both the native Spark engine (with the Python 3.12 of dataproc_spark_env) and Beam 2.77's Spark runner (--spark_version=3) support."
  type        = string
  default     = "2.2-debian12"

  validation {
    condition     = can(regex("^2\\.[0-9]+(\\.[0-9]+)?(-[a-z0-9]+)?$", var.dataproc_image_version))
    error_message = "dataproc_image_version must be a Dataproc 2.x image version such as 2.2-debian12."
  }
}

variable "dataproc_optional_components" {
  description = "Dataproc optional components. DOCKER runs the SDK harness from the same image as Dataflow (--environment_type=DOCKER). Add FLINK only on an image whose Flink is one Beam 2.77 supports (1.19, 1.20 or 2.x); Dataproc 2.2 ships Flink 1.17, which it does not."
  type        = list(string)
  default     = ["DOCKER"]

  validation {
    condition     = contains(var.dataproc_optional_components, "DOCKER") && alltrue([for c in var.dataproc_optional_components : contains(["DOCKER", "FLINK", "ZOOKEEPER"], c)])
    error_message = "dataproc_optional_components must include DOCKER and may add FLINK or ZOOKEEPER."
  }
}

variable "dataproc_machine_type" {
  description = "Machine type of the Dataproc master and workers."
  type        = string
  default     = "n2-standard-8"
}

variable "dataproc_workers" {
  description = "Number of primary Dataproc workers."
  type        = number
  default     = 2

  validation {
    condition     = var.dataproc_workers >= 2 && var.dataproc_workers <= 500 && floor(var.dataproc_workers) == var.dataproc_workers
    error_message = "dataproc_workers must be a whole number between 2 and 500 (a standard cluster needs at least 2)."
  }
}

variable "dataproc_idle_delete_ttl" {
  description = "The Dataproc cluster deletes itself after this long without jobs (a duration in seconds, e.g. 3600s), so a forgotten cluster does not keep billing."
  type        = string
  default     = "3600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dataproc_idle_delete_ttl)) && tonumber(trimsuffix(var.dataproc_idle_delete_ttl, "s")) >= 600
    error_message = "dataproc_idle_delete_ttl must be a number of seconds with an s suffix, at least 600s."
  }
}
