# The Dataflow worker identity, least privilege:
#   project level: roles/dataflow.worker only (required to run work items; no primitive roles);
#   input:         roles/storage.objectViewer on the input buckets (public IDC needs none);
#   output, temp, staging: roles/storage.objectUser on those buckets only (create, read,
#                  overwrite and delete objects: LATEST.json is rewritten, reruns skip and replace);
#   image:         roles/artifactregistry.reader on the one repository.
# The flex template launcher VM runs as the same account.

resource "google_service_account" "dataflow_worker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-dataflow"
  display_name = "hcc-shards Dataflow worker"
  description  = "Runs hcc-shards Dataflow jobs and their flex template launcher. Bucket-level grants only, plus roles/dataflow.worker."

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "dataflow_worker" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = google_service_account.dataflow_worker.member
}

resource "google_storage_bucket_iam_member" "worker_output" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow_worker.member
}

resource "google_storage_bucket_iam_member" "worker_temp" {
  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow_worker.member
}

resource "google_storage_bucket_iam_member" "worker_staging" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow_worker.member
}

resource "google_storage_bucket_iam_member" "worker_input_mirror" {
  count = var.create_input_mirror ? 1 : 0

  bucket = google_storage_bucket.input_mirror[0].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.dataflow_worker.member
}

resource "google_storage_bucket_iam_member" "worker_extra_input" {
  for_each = toset(var.extra_input_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.dataflow_worker.member
}

resource "google_artifact_registry_repository_iam_member" "worker_image_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.dataflow_worker.member
}

# Who may start jobs that run as the worker account: a grant on that account, not the project.
resource "google_service_account_iam_member" "launchers" {
  for_each = toset(var.launcher_members)

  service_account_id = google_service_account.dataflow_worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Cloud Storage writes usage logs as this Google-owned group; it may only create objects in
# the log bucket.
resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
