"""The client of a running ``imageport serve``: what the client commands of ``imageport`` use.

::

    signing    SDK-HMAC-SHA256 (image API) and SigV4 (bucket API) request signers
    config     endpoints and credentials from flags > environment > client.toml
    transport  one signed HTTP exchange with retries (httpx, connection reuse)
    s3         the bucket API client (buckets, objects, multipart uploads)
    upload     parallel, resumable multipart upload with a progress bar
    ims        the image API client (register, list, show, delete images; jobs)
    keypairs   the server API's SSH key pair routes (create or import, list, show, delete)
    errors     ClientError (server code, message, request id) and ConfigError

Nothing here is imported by ``imageport check``: the CLI imports these inside its commands.
"""
