"""Documents: models, upload/download pipeline, blob stores, antivirus (issue 4)."""
