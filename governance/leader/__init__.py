"""Two replicas, one acting: leader election over a Kubernetes Lease (see replica.py)."""
