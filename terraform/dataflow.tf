# The flex template spec (what `gcloud dataflow flex-template build` writes) and, when
# launch_job is true, the build job itself.

locals {
  # Runtime defaults stored in the template: every launch gets the private subnet, no public
  # IPs, the least-privilege worker account and the image, unless the caller overrides them.
  template_default_environment = merge(
    {
      serviceAccountEmail  = google_service_account.dataflow_worker.email
      tempLocation         = "gs://${google_storage_bucket.temp.name}/temp"
      stagingLocation      = "gs://${google_storage_bucket.staging.name}/staging"
      subnetwork           = google_compute_subnetwork.workers.self_link
      ipConfiguration      = "WORKER_IP_PRIVATE"
      machineType          = var.worker_machine_type
      diskSizeGb           = var.worker_disk_size_gb
      numWorkers           = var.num_workers
      autoscalingAlgorithm = "AUTOSCALING_ALGORITHM_BASIC"
      maxWorkers           = var.max_workers
      sdkContainerImage    = local.image_uri
      launcherMachineType  = var.launcher_machine_type
      additionalUserLabels = local.labels
    },
    var.kms_key_name == null ? {} : { kmsKeyName = var.kms_key_name },
  )
}

resource "google_storage_bucket_object" "flex_template" {
  bucket       = google_storage_bucket.staging.name
  name         = local.template_object
  content_type = "application/json"
  content = jsonencode({
    image              = local.image_uri
    sdkInfo            = { language = "PYTHON" }
    metadata           = jsondecode(file("${path.module}/../deploy/metadata.json"))
    defaultEnvironment = local.template_default_environment
  })
}

resource "google_dataflow_flex_template_job" "build" {
  count    = var.launch_job ? 1 : 0
  provider = google-beta

  project                 = var.project_id
  region                  = var.region
  name                    = var.job_name
  container_spec_gcs_path = local.template_gcs
  on_delete               = "cancel"
  labels                  = local.labels

  parameters = merge(var.job_parameters, {
    input  = var.job_input
    output = local.output_url
  })

  service_account_email = google_service_account.dataflow_worker.email
  temp_location         = "gs://${google_storage_bucket.temp.name}/temp"
  staging_location      = "gs://${google_storage_bucket.staging.name}/staging"
  subnetwork            = google_compute_subnetwork.workers.self_link
  ip_configuration      = "WORKER_IP_PRIVATE"
  machine_type          = var.worker_machine_type
  num_workers           = var.num_workers
  max_workers           = var.max_workers
  autoscaling_algorithm = "THROUGHPUT_BASED"
  sdk_container_image   = local.image_uri
  launcher_machine_type = var.launcher_machine_type
  kms_key_name          = var.kms_key_name

  lifecycle {
    precondition {
      condition     = var.job_input != null
      error_message = "launch_job = true needs job_input (the gs:// prefixes, or the @gs:// list file, of the DICOM to build)."
    }
  }

  depends_on = [
    google_storage_bucket_object.flex_template,
    google_project_iam_member.dataflow_worker,
    google_storage_bucket_iam_member.worker_output,
    google_storage_bucket_iam_member.worker_temp,
    google_storage_bucket_iam_member.worker_staging,
    google_artifact_registry_repository_iam_member.worker_image_reader,
    google_compute_firewall.dataflow_internal,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}
