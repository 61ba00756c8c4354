"""Data in: the image type, file IO, label schema and ultrasound sector geometry."""
