"""Automatic configuration: fix an image's guest offline, record exactly what changed.

``fixes/`` holds one small unit per rule it satisfies, each planning edits through
:class:`~imageport.configure.edits.Edits` from the guest as the checker reads it;
:mod:`~imageport.configure.plan` runs them in order into one :class:`Plan`; the service applies
the plan to a copy of the image through the guest editor port (libguestfs' appliance: the
host never mounts the guest) and checks the result.
"""
