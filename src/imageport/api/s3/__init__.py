"""The S3-compatible bucket API (path-style), served on its own port.

:func:`imageport.api.s3.app.build_s3_app` builds the Starlette app. Modules, each one concern:
``app`` (routing by method, path and sub-resource), ``request`` (parsing and authentication),
``body`` (streaming request bodies to disk with digests, aws-chunked decoding), ``ranges``,
``xml`` (safe parsing and rendering), ``responses`` (errors, object headers, file bodies) and the
views ``bucket_views``, ``object_views``, ``multipart_views``.
"""
