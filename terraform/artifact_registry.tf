# Docker repository for the worker / flex template image (deploy/Dockerfile).

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:CMEK is optional by design (var.kms_key_name); when it is null the repository uses Google-managed encryption, and when it is set kms_key_name below applies it.
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  description   = "hcc-shards worker and flex template images"
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  docker_config {
    immutable_tags = false
  }

  cleanup_policy_dry_run = false

  # Keep the 10 newest versions of every image; delete untagged layers after a week.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "604800s"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents, google_project_service.apis]
}
