# hcc-shards on Google Cloud: buckets, a least-privilege worker identity, a private network,
# an Artifact Registry repository for the worker image, the flex template, and the job itself.
# See README.md in this folder for the order of operations.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  bucket_location = coalesce(var.bucket_location, var.region)
  bucket_prefix   = "${var.project_id}-${var.name_prefix}"
  cmek            = var.kms_key_name == null ? [] : [var.kms_key_name]

  labels = merge({ "app" = "hcc-shards", "managed-by" = "terraform" }, var.labels)

  image_repository_url = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  image_uri            = "${local.image_repository_url}/${var.image_name}:${var.image_tag}"

  template_object = "templates/${var.image_name}-${var.image_tag}.json"
  template_gcs    = "gs://${google_storage_bucket.staging.name}/${local.template_object}"
  output_url      = "gs://${google_storage_bucket.output.name}/${var.job_output_path}"

  apis = concat(
    [
      "artifactregistry.googleapis.com",
      "compute.googleapis.com",
      "dataflow.googleapis.com",
      "iam.googleapis.com",
      "storage.googleapis.com",
    ],
    var.kms_key_name == null ? [] : ["cloudkms.googleapis.com"],
    var.enable_dataproc ? ["dataproc.googleapis.com"] : [],
  )
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
