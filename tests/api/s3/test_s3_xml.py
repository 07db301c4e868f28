"""Request XML as the four S3 clients send it, and what the parser refuses."""

from __future__ import annotations

import pytest

from imageport.api.s3 import xml
from imageport.service.errors import RequestInvalid


def test_complete_bodies_of_every_client() -> None:
    boto3 = (
        b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b'<Part><ETag>"aa"</ETag><PartNumber>1</PartNumber>'
        b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>"
    )
    s3cmd = (
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>aa</ETag></Part>"
        b"<Part><PartNumber>2</PartNumber><ETag>bb</ETag></Part></CompleteMultipartUpload>"
    )
    rclone = (
        b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Part><ETag>&#34;aa&#34;</ETag><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>"
    )
    assert xml.complete_parts(boto3) == [(1, '"aa"')]
    assert xml.complete_parts(s3cmd) == [(1, "aa"), (2, "bb")]
    assert xml.complete_parts(rclone) == [(1, '"aa"')]


def test_dtd_entities_and_garbage_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]>'
        b"<CompleteMultipartUpload>&a;</CompleteMultipartUpload>"
    )
    for body in (
        bomb,
        b"<CompleteMultipartUpload><Part>",
        b"<Other/>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
        b"<ETag>a</ETag></Part></CompleteMultipartUpload>",
    ):
        with pytest.raises(RequestInvalid) as exc:
            xml.complete_parts(body)
        assert exc.value.code == "MalformedXML"


def test_delete_and_create_bucket_bodies() -> None:
    keys, quiet = xml.delete_keys(
        b"<Delete><Quiet>true</Quiet><Object><Key>a b</Key></Object>"
        b"<Object><Key>c</Key></Object></Delete>"
    )
    assert keys == ["a b", "c"] and quiet
    obs = b"<CreateBucketConfiguration><Location>region</Location></CreateBucketConfiguration>"
    assert xml.location_constraint(obs) == "region"
    assert xml.location_constraint(b"") is None


def test_delete_entries_carry_their_conditions() -> None:
    entries, quiet = xml.delete_entries(
        b'<Delete><Object><Key>a</Key><ETag>"e1"</ETag><Size>7</Size>'
        b"<LastModifiedTime>2024-11-06T06:21:08.769Z</LastModifiedTime></Object>"
        b"<Object><Key>b</Key><VersionId>null</VersionId></Object></Delete>"
    )
    assert not quiet and [e.key for e in entries] == ["a", "b"]
    first = entries[0].condition
    assert first is not None and (first.etag, first.size) == ('"e1"', 7)
    assert first.last_modified is not None and first.last_modified.second == 8
    assert entries[1].condition is None and entries[1].version_id == "null"
    for bad in (
        b"<Size>-1</Size>",
        b"<Size>1e3</Size>",
        b"<LastModifiedTime>soon</LastModifiedTime>",
    ):
        with pytest.raises(RequestInvalid) as exc:
            xml.delete_entries(b"<Delete><Object><Key>a</Key>" + bad + b"</Object></Delete>")
        assert exc.value.code == "MalformedXML"


def test_bucket_configuration_names_what_it_asks_for() -> None:
    directory = xml.bucket_configuration(
        b"<CreateBucketConfiguration><Location><Type>AvailabilityZone</Type></Location>"
        b"<Bucket><Type>Directory</Type></Bucket></CreateBucketConfiguration>"
    )
    assert directory.location is None and directory.others == ("Location", "Bucket")
    s3 = xml.bucket_configuration(
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1"
        b"</LocationConstraint></CreateBucketConfiguration>"
    )
    assert (s3.location, s3.others) == ("eu-west-1", ())


def test_deep_or_dense_xml_is_refused_before_it_grows() -> None:
    """A 2 MiB body nested 200,000 deep once took 86 MiB as a tree; the parse now stops at
    the depth or element cap, whatever the body's size."""
    from imageport.api.s3 import xml
    from imageport.service.errors import RequestInvalid

    deep = b"<Delete>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"</Delete>"
    dense = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 40_000 + b"</Delete>"
    for body in (deep, dense):
        with pytest.raises(RequestInvalid) as err:
            xml.delete_keys(body)
        assert err.value.code == "MalformedXML" and "elements" in err.value.message
    parts = b"".join(
        b'<Part><PartNumber>%d</PartNumber><ETag>"e"</ETag>'
        b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>" % n
        for n in range(1, 10_001)
    )
    body = b"<CompleteMultipartUpload>" + parts + b"</CompleteMultipartUpload>"
    assert len(xml.complete_parts(body)) == 10_000  # the largest real body still parses
