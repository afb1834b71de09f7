output "dataset_bucket" {
  description = "Bucket of the built dataset (versioned)."
  value       = google_storage_bucket.output.name
}

output "dataset_url" {
  description = "OUTPUT of the build job: gs://<dataset bucket>/<job_output_path>."
  value       = local.output_url
}

output "temp_location" {
  description = "Dataflow --temp_location (objects expire after temp_retention_days)."
  value       = "gs://${google_storage_bucket.temp.name}/temp"
}

output "staging_location" {
  description = "Dataflow --staging_location (per-job files expire after staging_retention_days)."
  value       = "gs://${google_storage_bucket.staging.name}/staging"
}

output "input_mirror_bucket" {
  description = "Private input mirror bucket, or null when create_input_mirror is false."
  value       = var.create_input_mirror ? google_storage_bucket.input_mirror[0].name : null
}

output "access_log_bucket" {
  description = "Bucket receiving the Cloud Storage usage logs of the other buckets."
  value       = google_storage_bucket.access_logs.name
}

output "worker_service_account" {
  description = "Email of the Dataflow worker (and flex template launcher) service account."
  value       = google_service_account.dataflow_worker.email
}

output "image_repository" {
  description = "Artifact Registry Docker repository URL (push the image here)."
  value       = local.image_repository_url
}

output "image_uri" {
  description = "Full image reference the template and the workers run."
  value       = local.image_uri
}

output "template_gcs_path" {
  description = "gs:// path of the flex template spec (pass to --template-file-gcs-location)."
  value       = local.template_gcs
}

output "subnetwork" {
  description = "Self link of the private worker subnet (Private Google Access on)."
  value       = google_compute_subnetwork.workers.self_link
}

output "region" {
  description = "Region of the jobs, the subnet and the repository."
  value       = var.region
}

output "project_id" {
  description = "Project that holds the stack and runs the jobs."
  value       = var.project_id
}

output "dataflow_job_id" {
  description = "ID of the flex template job, or null when launch_job is false."
  value       = var.launch_job ? google_dataflow_flex_template_job.build[0].job_id : null
}

output "dataproc_cluster" {
  description = "Name of the Dataproc cluster, or null when enable_dataproc is false."
  value       = var.enable_dataproc ? google_dataproc_cluster.beam[0].name : null
}

output "launch_command" {
  description = "A ready gcloud command that launches one build from the template (the defaults stored in the template set the network, identity and machines)."
  value = join(" ", [
    "gcloud dataflow flex-template run ${var.job_name}-$(date +%Y%m%d-%H%M%S)",
    "--project=${var.project_id}",
    "--region=${var.region}",
    "--template-file-gcs-location=${local.template_gcs}",
    "--parameters=input=${coalesce(var.job_input, "gs://BUCKET/PREFIX")},output=${local.output_url}",
  ])
}
