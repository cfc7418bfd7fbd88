"""Deploying the service to Kubernetes: the manifests rendered from params.yaml's `deploy:`."""
