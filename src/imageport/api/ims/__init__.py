"""The vendor-compatible image API ("IMS"): cloudimages, Glance images and jobs.

:func:`imageport.api.ims.app.build_ims_app` builds the Starlette app; the modules are
``incoming`` (body, authentication, the call record a view receives), ``errors`` (the vendor's
error body), ``render`` (records to the vendor's JSON), ``image_views`` / ``job_views`` (one
thin view per route) and ``app`` (the route table).
"""
