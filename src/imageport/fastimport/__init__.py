"""Fast import: RAW bitmap files and the ZVHD/ZVHD2 writer."""
