"""The one exception tree of imageport: every error a module raises on purpose, drawn once.

Each line names a class, the module under ``imageport`` that defines it, and when it is raised;
``tests/test_errors.py`` fails when a class is missing here, sits under another parent than
drawn, or is not an :class:`ImageportError`::

    ImageportError                errors                       anything raised on purpose
    ├── SourceError               errors                       the file cannot be opened or read
    │   └── OutsideHeader         formats.window               a read past a header window
    ├── CorruptImageError         errors                       bytes invalid for their format
    │   ├── TruncatedImageError   errors                       a structure runs past the end
    │   ├── LimitExceededError    errors                       a number beyond a cap in limits
    │   │   └── TooLargeError     guest.fs.base                a guest file beyond its cap
    │   └── BitmapFileError       fastimport.bitmap_layout     a ``.mf`` file that is no bitmap
    ├── UnsafeImageError          errors                       tables that amplify (IMG-SAFE)
    ├── UnsupportedImageError     errors                       a feature no reader implements
    │   └── Unverifiable          guest.facts.password_hashes  a password hash of unknown scheme
    ├── NotRawError               fastimport.bitmap            a bitmap asked of a non-RAW file
    ├── ImageRefusedError         service.tools.to_raw         the check refuses the conversion
    ├── NoSuchFileError           guest.fs.base                a path missing in a guest fs
    ├── UnreadableError           guest.fs.base                a guest path that cannot be read
    │   ├── BrokenLinkError       guest.fs.base                a dangling symlink on the path
    │   └── WrongTypeError        guest.fs.base                a directory read as a file, ...
    ├── YamlRefused               guest.files.safeyaml         guest YAML that is not accepted
    ├── SignatureError            auth.errors                  a signed request refused
    ├── ServiceError              service.errors               a request not served: code, status
    │   ├── RequestInvalid        service.errors               400 an invalid value
    │   ├── Unauthenticated       service.errors               401 no, bad or expired credentials
    │   ├── Forbidden             service.errors               403 authenticated, not allowed
    │   ├── NotFound              service.errors               404 missing, or not the caller's
    │   ├── Conflict              service.errors               409 exists already, or busy
    │   ├── RangeNotSatisfiable   api.s3.ranges                416 ``InvalidRange``
    │   ├── HeaderNotImplemented  api.s3.request_features      501 ``NotImplemented`` (a header)
    │   └── RetryLater            service.access.replay        503 ``SlowDown``: retry later
    ├── JobFailedError            service.jobs.errors          ends a job FAIL: code and reason
    ├── JobCancelledError         service.jobs.errors          ends a job cancelled
    ├── WorkerError               service.ports                a worker process failed
    ├── WorkerCancelledError      service.ports                a worker killed: job cancelled
    ├── BootError                 service.ports                a virtual machine did not start
    ├── MachineError              service.ports                a server's machine op failed
    ├── GuestEditError            service.ports                the editing appliance failed
    ├── NotEditableError          configure.edits              a guest path a fix may not edit
    │   └── UnsupportedLineError  configure.fixes.cmdline      a command line not edited safely
    ├── NothingToConfigureError   service.tools.optimize       no installed system to configure
    ├── ClientError               client.errors                a client request failed
    │   └── ConfigError           client.errors                a client setting missing or bad
    └── StartError                server                       the server cannot start

Readers and parsers of images raise only the image errors (:class:`SourceError`,
:class:`CorruptImageError` and below it, :class:`UnsafeImageError`, :class:`UnsupportedImageError`
and below it); the guest filesystem readers add the path errors of ``guest.fs.base``
(:class:`NoSuchFileError`, :class:`UnreadableError` and below it), which the guest facts
record. Anything else escaping a parser is a bug; the check service turns it into a finding
rather than a crash, and the fuzz tests fail on it.

Two private classes stay out of the tree on purpose: ``api.http_protocol._Stop`` and
``disk.audit._SharedByte`` are control flow, caught inside their own module, never seen by a
caller (their comments say more).
"""

from __future__ import annotations


class ImageportError(Exception):
    """Base of every error imageport raises on purpose."""


class SourceError(ImageportError):
    """The image file cannot be opened or read at all (not a statement about its content)."""


class CorruptImageError(ImageportError):
    """The image's structures are invalid for the format it claims to be."""


class TruncatedImageError(CorruptImageError):
    """A structure the image declares lies (partly) beyond the end of the file."""


class LimitExceededError(CorruptImageError):
    """A size, count or offset from the image exceeds a cap in :mod:`imageport.limits`."""


class UnsafeImageError(ImageportError):
    """The tables can be read, but reading them as they are would amplify a small file.

    Raised by the storage audit (:mod:`imageport.disk.audit`): guest ranges that share host
    bytes, qcow2 refcounts that disagree with the tables, packed data whose expansion is beyond
    :data:`imageport.limits.MAX_PACKED_RATIO`. The check reports it as a hazard of the
    container (IMG-SAFE): ``kind`` is the hazard slug, the message is the evidence.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class UnsupportedImageError(ImageportError):
    """A well-formed image uses a feature that imageport cannot read (named in the message)."""
