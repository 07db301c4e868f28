"""Prometheus metrics of the service (served at ``/metrics`` on the image API port).

Counters and histograms are updated where the work happens; gauges that are a view of the
database (jobs by state) are computed when scraped, by the collector the server registers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "imageport_http_requests_total",
    "HTTP requests served",
    ["api", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "imageport_http_request_duration_seconds",
    "HTTP request latency",
    ["api"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_UPLOADED = Counter(
    "imageport_bytes_uploaded_total", "object bytes received by the bucket API", registry=REGISTRY
)
BYTES_PROCESSED = Counter(
    "imageport_job_bytes_processed_total",
    "image bytes read or written by import jobs",
    ["phase"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "imageport_jobs_finished_total", "jobs that ended", ["job_type", "status"], registry=REGISTRY
)
JOB_SECONDS = Histogram(
    "imageport_job_duration_seconds",
    "time from a job's start to its end",
    ["job_type"],
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
HTTP_CONNECTIONS = Gauge(
    "imageport_http_open_connections",
    "open client connections (within the caps)",
    ["api"],
    registry=REGISTRY,
)
HTTP_REFUSED = Counter(
    "imageport_http_refused_total",
    "connections ended by an HTTP limit (head or URL too "
    "large, a timeout, a connection cap; imageport.api.http_limits)",
    ["api", "reason"],
    registry=REGISTRY,
)
