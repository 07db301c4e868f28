"""Buckets and objects of the S3-compatible bucket API: objects, multipart uploads, part copies."""
