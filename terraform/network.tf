# A private network for the workers: no public IPs, Private Google Access so they still reach
# Cloud Storage (including gs://idc-open-data) and Artifact Registry, flow logs on.

resource "google_compute_network" "workers" {
  project                 = var.project_id
  name                    = "${var.name_prefix}-net"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "workers" {
  project                    = var.project_id
  name                       = "${var.name_prefix}-${var.region}"
  region                     = var.region
  network                    = google_compute_network.workers.id
  ip_cidr_range              = var.subnet_cidr
  private_ip_google_access   = true
  private_ipv6_google_access = "ENABLE_OUTBOUND_VM_ACCESS_TO_GOOGLE"

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Dataflow workers exchange shuffle and data-plane traffic on TCP 12345-12346; only
# between instances that carry the "dataflow" network tag (Dataflow adds it).
resource "google_compute_firewall" "dataflow_internal" {
  project     = var.project_id
  name        = "${var.name_prefix}-dataflow-internal"
  network     = google_compute_network.workers.id
  direction   = "INGRESS"
  priority    = 1000
  source_tags = ["dataflow"]
  target_tags = ["dataflow"]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Dataproc nodes talk to each other on all ports (YARN, HDFS, Flink, Spark); only between
# instances tagged by this stack.
resource "google_compute_firewall" "dataproc_internal" {
  count = var.enable_dataproc ? 1 : 0

  project     = var.project_id
  name        = "${var.name_prefix}-dataproc-internal"
  network     = google_compute_network.workers.id
  direction   = "INGRESS"
  priority    = 1000
  source_tags = ["${var.name_prefix}-dataproc"]
  target_tags = ["${var.name_prefix}-dataproc"]

  allow {
    protocol = "tcp"
    ports    = ["0-65535"]
  }

  allow {
    protocol = "udp"
    ports    = ["0-65535"]
  }

  allow {
    protocol = "icmp"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
