# Optional CMEK. The key itself is managed outside this stack (key rings cannot be deleted, and
# key custody usually belongs to a security team); here each Google service agent that encrypts
# on our behalf gets encrypt/decrypt on that one key, never on the project.

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Service agents that must use the key: Cloud Storage (buckets), Compute Engine (worker and
  # Dataproc disks), Dataflow (job state), Artifact Registry (the repository), Dataproc.
  cmek_agents = var.kms_key_name == null ? {} : merge(
    {
      compute          = "serviceAccount:service-${local.project_number}@compute-system.iam.gserviceaccount.com"
      dataflow         = "serviceAccount:service-${local.project_number}@dataflow-service-producer-prod.iam.gserviceaccount.com"
      artifactregistry = "serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    },
    var.enable_dataproc ? {
      dataproc = "serviceAccount:service-${local.project_number}@dataproc-accounts.iam.gserviceaccount.com"
    } : {},
  )
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count = var.kms_key_name == null ? 0 : 1

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.cmek_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
