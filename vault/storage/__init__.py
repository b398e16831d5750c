"""The document vault: tables, the upload pipeline (docs/architecture.md, "Upload"), object
stores, antivirus, the document API and the "Mes justificatifs" pages."""
