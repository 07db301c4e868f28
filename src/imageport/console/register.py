"""Registering an image: the vendor's "Import Image" form.

``GET /console/register`` shows the form, pre-filled from its query (the check page's
"Register this image" link passes what the check found: the object, OS version, disk size,
architecture, boot mode; a bucket page's link passes the object as ``bucket`` and ``key``).
``POST`` builds the body the vendor's SDK sends for the choices made (:func:`registration`)
and calls the service function of the route it would send it to:

================================ ============================================ =================
image                            route                                        service function
================================ ============================================ =================
system disk (fast import or not) ``POST /v2/cloudimages/action``              ``create_image``
data disk                        ``POST /v1/cloudimages/dataimages/action``   ``create_data_image``
data disk, fast import           ``POST /v2/cloudimages/quickimport/action``  ``quick_import``
================================ ============================================ =================

So the form refuses exactly what the API refuses, with the vendor's codes, shown at the input
the service's error names (:attr:`~imageport.service.errors.ServiceError.field`). A choice that
does not go with the image type (automatic configuration or a boot test for a data disk) is
sent anyway, for the service to refuse, never dropped. On success the browser goes to the new
image's page, which says that the import started (its job is in the page's jobs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from starlette.responses import Response

from imageport.console.fields import only_fields
from imageport.console.pages import PageCall, PageRoute, redirect, render, segment, url
from imageport.console.sources import MAX_SOURCE, source_choices
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.images import lifecycle, server_images
from imageport.service.images import validation as v
from imageport.service.images.import_request import MAX_DATA_IMAGES
from imageport.service.images.os_versions import os_version_document
from imageport.service.jobs import manage
from imageport.service.jobs.boot_request import check_boot_offered

Route = Literal["action", "dataimages", "quickimport"]
#: The service function behind each route the form may send to.
SERVICE: Mapping[Route, Callable[[Services, str, object], str]] = {
    "action": server_images.create_image,
    "dataimages": lifecycle.create_data_image,
    "quickimport": lifecycle.quick_import,
}
#: The form input that shows a refusal of each body field (the others are the same name).
INPUT_OF_FIELD = {
    "image_url": "source",
    "image_tags": "tags",
    "type": "image_type",
    "data_images": "data_source_1",
}
DATA_ROWS = MAX_DATA_IMAGES
"""Data disk images the form offers with a system disk image (the vendor's limit; the form
has a source and a size field for each)."""
_DATA_FIELDS = tuple(
    f"data_{part}_{row}" for row in range(1, DATA_ROWS + 1) for part in ("source", "min_disk")
)
MAX_TEXT = 2048
"""Longest text read from one form field (a description is at most 1024 characters; the
service refuses what is too long, naming the field)."""
MAX_NUMBER_TEXT = 20
"""Longest text passed on for a ``min_disk`` that is not a number (see :func:`_min_disk`)."""
MAX_TAG_LINES = v.MAX_TAGS + 1
"""Tag lines sent: one more than an image may carry, so that too many is refused, not cut."""
_TEXT_FIELDS = (
    "image_type",
    "source",
    "os_version",
    "os_type",
    "min_disk",
    "architecture",
    "hw_firmware_type",
    "name",
    "description",
    "tags",
    *_DATA_FIELDS,
)
_FLAGS = ("is_quick_import", "is_config", "boot_test")
#: The form's image types: a system disk's image, a data disk's.
IMAGE_TYPES = ("system", "data")
#: What the form posts, and what a link to it may give (anything else is refused, not dropped).
FORM_FIELDS = frozenset({"csrf", *_TEXT_FIELDS, *_FLAGS})
LINK_FIELDS = frozenset({"bucket", "key", *_TEXT_FIELDS, *_FLAGS})


@dataclass(frozen=True, slots=True)
class RegisterForm:
    """The form's values, as the page shows them (text, and the ticked boxes)."""

    image_type: str = "system"
    #: ``bucket:key``
    source: str = ""
    is_quick_import: bool = False
    is_config: bool = False
    #: ``""``: not chosen (the import job reads the system from the image)
    os_version: str = ""
    #: a data disk's: the system of the servers it is for
    os_type: str = "Linux"
    min_disk: str = ""
    architecture: str = "x86"
    hw_firmware_type: str = "bios"
    name: str = ""
    description: str = ""
    #: ``key=value`` lines
    tags: str = ""
    boot_test: bool = False
    #: data disk images registered with a system disk image: ``bucket:key`` and min disk
    data_source_1: str = ""
    data_min_disk_1: str = ""
    data_source_2: str = ""
    data_min_disk_2: str = ""
    data_source_3: str = ""
    data_min_disk_3: str = ""

    @property
    def data_disk(self) -> bool:
        return self.image_type == "data"

    @property
    def data_rows(self) -> list[tuple[int, str, str]]:
        """``(row, source, min_disk)`` of each data disk row, filled or not."""
        values = asdict(self)
        return [
            (row, values[f"data_source_{row}"], values[f"data_min_disk_{row}"])
            for row in range(1, DATA_ROWS + 1)
        ]


def read_form(values: Sequence[tuple[str, str]], *, defaults: RegisterForm) -> RegisterForm:
    """The form from ``values`` (a POST's fields, or the query of a pre-filled link): the first
    value of each field, at most :data:`MAX_TEXT` characters; a box is ticked when it is sent
    (with ``defaults`` for the fields not given, when ``values`` is a query)."""
    given: dict[str, str] = {}
    for name, value in values:
        given.setdefault(name, value[:MAX_TEXT])
    changes: dict[str, Any] = {name: given[name] for name in _TEXT_FIELDS if name in given}
    changes.update({name: name in given and given[name] != "" for name in _FLAGS})
    return replace(defaults, **changes)


def prefill(query: Sequence[tuple[str, str]], *, boot_default: bool) -> RegisterForm:
    """The form a link opens: the query's values over the defaults; the image's name
    suggested from the object's file name. The object is ``source`` (``bucket:key``, the check
    page's link), or ``bucket`` and ``key`` (the bucket and upload pages' links, which name it
    so to the check page too); those win over ``source``, as on the check page."""
    bucket, key = _first(query, "bucket"), _first(query, "key")
    if bucket and key:
        query = [("source", f"{bucket}:{key}"[: MAX_SOURCE + 1]), *query]
    form = read_form(query, defaults=RegisterForm())
    form = replace(form, boot_test=boot_default or form.boot_test)
    if not form.name and form.source:
        form = replace(form, name=suggested_name(form.source))
    return form


def check_image_type(image_type: str) -> None:
    """The form's two image types, ``system`` and ``data`` (``IMG.0024`` at the input
    otherwise: any other value was registered as a system disk)."""
    if image_type not in IMAGE_TYPES:
        raise RequestInvalid(
            codes.TYPE_INVALID,
            f"image_type must be one of {', '.join(IMAGE_TYPES)}, not {image_type[:20]!r}",
            field="type",
        )


def check_flags(values: Sequence[tuple[str, str]]) -> None:
    """A ticked box sends ``on``, an unticked one nothing: any other value of a box
    (``false``, ``0``, ``""``) is refused at it (``IMG.0001``), not read as ticked or not."""
    for name, value in values:
        if name in _FLAGS and value != "on":
            raise RequestInvalid(
                codes.BAD_REQUEST,
                f"{name}: a ticked box sends 'on', not {value[:20]!r}",
                field=name,
            )


def _first(values: Sequence[tuple[str, str]], name: str) -> str:
    return next((value for key, value in values if key == name), "")


def suggested_name(source: str) -> str:
    """An image name from the object's file name: its base name without the extension, with
    the characters a name may not hold replaced by ``-`` (at most 128)."""
    base = source.partition(":")[2].rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] or base
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "-" for c in stem)
    return cleaned.strip("-.")[: v.MAX_NAME]


def _image_tags(text: str) -> list[dict[str, str]]:
    """``key=value`` lines as ``image_tags`` (a line without ``=`` is a key with an empty
    value); blank lines skipped, at most :data:`MAX_TAG_LINES`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tags = []
    for line in lines[:MAX_TAG_LINES]:
        key, _, value = line.partition("=")
        tags.append({"key": key.strip(), "value": value.strip()})
    return tags


def _min_disk(text: str) -> object:
    """The ``min_disk`` to send: the whole number written (judged whole: a long one is
    :data:`~imageport.numbers.HUGE`, never cut into another), or the text as it is, at most
    :data:`MAX_NUMBER_TEXT` characters (the service refuses it naming the field), or None when
    empty."""
    text = text.strip()
    if not text:
        return None
    number = whole_number(text)
    return text[:MAX_NUMBER_TEXT] if number is None else number


def registration(form: RegisterForm, *, boot_offered: bool) -> tuple[Route, dict[str, object]]:
    """The route and the body the vendor's SDK sends for ``form`` (fields left out when
    empty, as the SDK leaves out unset attributes). ``boot_offered``: the server runs boot
    tests, so a system image's ``boot_test`` is sent either way."""
    body: dict[str, object] = {"name": form.name}
    if form.description:
        body["description"] = form.description.replace("\r\n", "\n")
    body["image_url"] = form.source[:MAX_SOURCE]
    min_disk = _min_disk(form.min_disk)
    if min_disk is not None:
        body["min_disk"] = min_disk
    route: Route
    if form.data_disk:
        route = "quickimport" if form.is_quick_import else "dataimages"
        body["os_type"] = form.os_type
        if form.is_quick_import:
            body["type"] = "DataImage"
        if form.is_config:
            body["is_config"] = True
        if form.boot_test:
            body["boot_test"] = True
    else:
        route = "action"
        if form.os_version:
            body["os_version"] = form.os_version
        if form.architecture:
            body["architecture"] = form.architecture
        if form.hw_firmware_type:
            body["hw_firmware_type"] = form.hw_firmware_type
        if form.is_quick_import:
            body["is_quick_import"] = True
        if form.is_config:
            body["is_config"] = True
        if boot_offered:
            body["boot_test"] = form.boot_test
    tags = _image_tags(form.tags)
    if tags:
        body["image_tags"] = tags
    data_images = _data_images(form)
    if data_images:  # with a data disk's image too: the service refuses that, nothing is dropped
        body["data_images"] = data_images
    return route, body


def _data_images(form: RegisterForm) -> list[dict[str, object]]:
    """The filled data disk rows as the SDK sends ``data_images``: each named after the image
    (``NAME-data1``...) with its object and its ``min_disk`` (a row with a size but no object
    is sent too, for the service to refuse)."""
    images: list[dict[str, object]] = []
    for row, source, min_disk_text in form.data_rows:
        if not source and not min_disk_text:
            continue
        item: dict[str, object] = {
            "name": f"{form.name}-data{row}",
            "image_url": source[:MAX_SOURCE],
        }
        min_disk = _min_disk(min_disk_text)
        if min_disk is not None:
            item["min_disk"] = min_disk
        images.append(item)
    return images


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str


def input_of(field: str | None) -> str | None:
    """The form input that shows a refusal of body field ``field`` (None: the form has no
    input for it, the refusal shows above the form)."""
    if field is None:
        return None
    name = INPUT_OF_FIELD.get(field, field)
    return name if name in {f.name for f in fields(RegisterForm)} else None


def _offered(services: Services) -> tuple[str | None, bool]:
    """Why automatic configuration is not offered here (None: it is), and whether boot tests
    are."""
    try:
        lifecycle.check_configuration_offered(services)
        config_refused = None
    except RequestInvalid as refused:
        config_refused = refused.message
    try:
        check_boot_offered(services, ("bios",))
        boot = True
    except RequestInvalid:
        boot = False
    return config_refused, boot


def _page(
    services: Services,
    call: PageCall,
    form: RegisterForm,
    *,
    boot: bool,
    config_refused: str | None,
    errors: Mapping[str, Refusal] | None = None,
    failure: Refusal | None = None,
    status: int = 200,
) -> Response:
    choices = source_choices(services, call.project_id)
    selected = next(
        (o for bucket in choices for o in bucket.objects if o.source == form.source), None
    )
    return render(
        call,
        "register.html",
        status=status,
        nav="images",
        form=form,
        choices=choices,
        selected=selected,
        os_versions=os_version_document(),
        boot_offered=boot,
        config_refused=config_refused,
        errors=errors or {},
        failure=failure,
        max_tags=v.MAX_TAGS,
        data_rows=DATA_ROWS,
    )


def register_form(services: Services, call: PageCall) -> Response:
    """The import form, pre-filled from the query (a check's "Register this image" link)."""
    only_fields(call.query, LINK_FIELDS)
    config_refused, boot = _offered(services)
    boot_default = boot and services.settings.import_boot_test
    check_flags(call.query)
    form = prefill(call.query, boot_default=boot_default)
    check_image_type(form.image_type)
    return _page(services, call, form, boot=boot, config_refused=config_refused)


def register(services: Services, call: PageCall) -> Response:
    """Register the form's object as an image through the registration routes' service
    functions; a refusal is shown at its field with the vendor's code."""
    only_fields(call.form, FORM_FIELDS)
    config_refused, boot = _offered(services)
    form = read_form(call.form, defaults=RegisterForm(architecture="", hw_firmware_type=""))
    route, body = registration(form, boot_offered=boot)
    try:
        check_flags(call.form)
        check_image_type(form.image_type)
        job_id = SERVICE[route](services, call.project_id, body)
    except NotFound:
        raise
    except ServiceError as refused:
        where = input_of(refused.field)
        if where == "boot_test" and not boot:
            where = None  # the form has no such box here: said above the form
        shown = Refusal(refused.code, refused.message)
        return _page(
            services,
            call,
            form,
            boot=boot,
            config_refused=config_refused,
            errors={where: shown} if where else None,
            failure=None if where else shown,
            status=refused.status,
        )
    image_id = manage.show_job(services, call.project_id, job_id).image_id or ""
    return redirect(url(f"/images/{segment(image_id)}", done="registered"))


PAGES = [
    PageRoute("/register", register_form),
    PageRoute("/register", register, ("POST",)),
]
