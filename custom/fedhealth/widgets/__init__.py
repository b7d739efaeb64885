"""Site and server widgets: components a kit's resources.json or a job's config installs."""
