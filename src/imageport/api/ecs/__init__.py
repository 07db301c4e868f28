"""The vendor's server API (ECS, and the Nova key pair routes its SDK uses), served on the
image API's listener: ``/v1/{project_id}/jobs/{job_id}`` is shared by both, so one host answers
both and job ids are unique across them."""
