"""Load generation: synthetic chest X-ray studies, good and deliberately bad, and upload."""
