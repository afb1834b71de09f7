# Optional Dataproc cluster to run the build on Spark: with the native Spark engine
# (pipelines/spark/submit.py; its Python environment installed on every node when
# dataproc_spark_env, from a bundle staged in the staging bucket), or with Beam's portable runner
# on Spark (or Flink, where the image's Flink is a version Beam supports), whose SDK harnesses run
# the same image as Dataflow's workers (DOCKER environment). See docs/RUN_ON_SPARK.md. Nothing is
# fetched from the internet on the nodes: they have no route to it.

locals {
  dataproc_spark_env = var.dataproc_spark_env ? "gs://${google_storage_bucket.staging.name}/dataproc/spark-env" : ""
  # Where deploy/install_spark_env.sh puts the interpreter; every Spark job on the cluster uses it.
  dataproc_spark_python = var.dataproc_spark_env ? {
    "spark:spark.pyspark.python"        = "/opt/hcc-shards/venv/bin/python"
    "spark:spark.pyspark.driver.python" = "/opt/hcc-shards/venv/bin/python"
  } : {}
}

resource "google_service_account" "dataproc" {
  count = var.enable_dataproc ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-dataproc"
  display_name = "hcc-shards Dataproc nodes"
  description  = "VM identity of the hcc-shards Dataproc cluster: roles/dataproc.worker plus bucket-level grants."

  depends_on = [google_project_service.apis]
}

# roles/dataproc.worker is the role Dataproc requires of a cluster's VM service account.
resource "google_project_iam_member" "dataproc_worker" {
  count = var.enable_dataproc ? 1 : 0

  project = var.project_id
  role    = "roles/dataproc.worker"
  member  = google_service_account.dataproc[0].member
}

resource "google_storage_bucket_iam_member" "dataproc_buckets" {
  for_each = var.enable_dataproc ? {
    output  = google_storage_bucket.output.name
    temp    = google_storage_bucket.temp.name
    staging = google_storage_bucket.staging.name
  } : {}

  bucket = each.value
  role   = "roles/storage.objectUser"
  member = google_service_account.dataproc[0].member
}

resource "google_storage_bucket_iam_member" "dataproc_input_mirror" {
  count = var.enable_dataproc && var.create_input_mirror ? 1 : 0

  bucket = google_storage_bucket.input_mirror[0].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.dataproc[0].member
}

resource "google_storage_bucket_iam_member" "dataproc_extra_input" {
  for_each = var.enable_dataproc ? toset(var.extra_input_buckets) : toset([])

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.dataproc[0].member
}

resource "google_artifact_registry_repository_iam_member" "dataproc_image_reader" {
  count = var.enable_dataproc ? 1 : 0

  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.dataproc[0].member
}

resource "google_storage_bucket_object" "dataproc_init" {
  count = var.enable_dataproc ? 1 : 0

  bucket       = google_storage_bucket.staging.name
  name         = "dataproc/hcc-shards-init.sh"
  content_type = "text/x-shellscript"
  source       = "${path.module}/../deploy/dataproc_init.sh"
}

resource "google_dataproc_cluster" "beam" {
  #checkov:skip=CKV_GCP_91:CMEK is optional by design (var.kms_key_name); when set, the dynamic encryption_config below applies it to every disk.
  count = var.enable_dataproc ? 1 : 0

  project = var.project_id
  region  = var.region
  name    = "${var.name_prefix}-beam"
  labels  = local.labels

  cluster_config {
    staging_bucket = google_storage_bucket.staging.name
    temp_bucket    = google_storage_bucket.temp.name

    gce_cluster_config {
      subnetwork             = google_compute_subnetwork.workers.self_link
      internal_ip_only       = true
      service_account        = google_service_account.dataproc[0].email
      service_account_scopes = ["cloud-platform"]
      tags                   = ["${var.name_prefix}-dataproc"]

      # Read by the initialization action (deploy/dataproc_init.sh).
      metadata = {
        "hcc-image"      = local.image_uri
        "hcc-image-host" = "${var.region}-docker.pkg.dev"
        "hcc-spark-env"  = local.dataproc_spark_env
      }

      shielded_instance_config {
        enable_secure_boot          = true
        enable_vtpm                 = true
        enable_integrity_monitoring = true
      }
    }

    master_config {
      num_instances = 1
      machine_type  = var.dataproc_machine_type
      disk_config {
        boot_disk_type    = "pd-balanced"
        boot_disk_size_gb = 100
      }
    }

    worker_config {
      num_instances = var.dataproc_workers
      machine_type  = var.dataproc_machine_type
      disk_config {
        boot_disk_type    = "pd-balanced"
        boot_disk_size_gb = 100
      }
    }

    software_config {
      image_version       = var.dataproc_image_version
      optional_components = var.dataproc_optional_components
      override_properties = merge({
        "dataproc:dataproc.logging.stackdriver.enable" = "true"
      }, local.dataproc_spark_python)
    }

    initialization_action {
      script      = "gs://${google_storage_bucket.staging.name}/${google_storage_bucket_object.dataproc_init[0].name}"
      timeout_sec = 900
    }

    lifecycle_config {
      idle_delete_ttl = var.dataproc_idle_delete_ttl
    }

    endpoint_config {
      enable_http_port_access = false
    }

    dynamic "encryption_config" {
      for_each = local.cmek
      content {
        kms_key_name = encryption_config.value
      }
    }
  }

  depends_on = [
    google_project_iam_member.dataproc_worker,
    google_storage_bucket_iam_member.dataproc_buckets,
    google_artifact_registry_repository_iam_member.dataproc_image_reader,
    google_compute_firewall.dataproc_internal,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}
