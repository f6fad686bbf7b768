"""The CDS Hooks 2.0 service: authentication of the calling EHR and, later, discovery, the
patient-view hook and feedback endpoints."""
