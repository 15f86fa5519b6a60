"""The pipeline definition both engines interpret: stages declared once."""
