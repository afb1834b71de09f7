"""Keyed pseudonyms for patient and study identifiers (``BuildConfig.pseudonymize_key``).

A pseudonym is an HMAC-SHA256 of the identifier under the build's key: the same key gives the
same pseudonym in every build (so cases stay linked across versions), a holder of the key can
recompute it from the source, and without the key it cannot be reversed or recomputed.

- PatientID -> ``anon-<16 hex>``.
- Every DICOM UID a header carries (study, series, SOP instance, frame of reference, and the
  SEG's references to them) -> ``2.25.<decimal of the first 128 bits>``, still a valid UID. UIDs
  that name standards (SOP classes, transfer syntaxes) are kept. References stay consistent, so
  pairing works on pseudonymised headers exactly as on the originals.
- Input URLs in quarantine records -> ``pseudonymized:<24 hex>`` (folder names of the TCIA layout
  hold the PatientID and the study date), in the ``url`` field and wherever they occur in a message.

Order of operations in a build: headers are pseudonymised as soon as they are read
(:meth:`Pseudonymizer.header`), before grouping and pairing; records of the index stage, which
may carry the raw identifiers of a header, go through :meth:`Pseudonymizer.record`; records of
later stages already carry pseudonyms and only have their URLs replaced (:meth:`Pseudonymizer.scrub_urls`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import replace

from hcc_shards.dicom.header import InstanceHeader, ReferencedSeries, SegFrame
from hcc_shards.errors import ConfigError
from hcc_shards.quarantine import QuarantineRecord

__all__ = ["PATIENT_PREFIX", "URL_PREFIX", "Pseudonymizer"]

PATIENT_PREFIX = "anon-"
URL_PREFIX = "pseudonymized:"
_UID_TOKEN = re.compile(r"(?<![\w.])[0-2](?:\.\d+){3,}(?![\w.])")


class Pseudonymizer:
    """Keyed hashes of identifiers; one instance per key."""

    def __init__(self, key: str) -> None:
        if not key:
            raise ConfigError("the pseudonymization key is empty; set HCC_SHARDS_PSEUDONYMIZE_KEY")
        self._key = key.encode()

    def __repr__(self) -> str:  # never print the key
        return "Pseudonymizer(<key>)"

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def patient_id(self, patient_id: str) -> str:
        return f"{PATIENT_PREFIX}{self._digest('patient', patient_id).hex()[:16]}" if patient_id else ""

    def uid(self, uid: str) -> str:
        if not uid:
            return ""
        return f"2.25.{int.from_bytes(self._digest('uid', uid)[:16], 'big')}"

    def url(self, url: str) -> str:
        return f"{URL_PREFIX}{self._digest('url', url).hex()[:24]}" if url else ""

    def header(self, h: InstanceHeader) -> InstanceHeader:
        """``h`` with PatientID and every instance, series, study and frame-of-reference UID replaced."""
        u = self.uid
        return replace(
            h,
            patient_id=self.patient_id(h.patient_id),
            sop_instance_uid=u(h.sop_instance_uid),
            study_instance_uid=u(h.study_instance_uid),
            series_instance_uid=u(h.series_instance_uid),
            frame_of_reference_uid=u(h.frame_of_reference_uid),
            content_creator_name="",  # a person's name
            referenced_series=tuple(
                ReferencedSeries(u(rs.series_instance_uid), tuple(u(x) for x in rs.instance_uids))
                for rs in h.referenced_series
            ),
            source_instance_uids=tuple(u(x) for x in h.source_instance_uids),
            seg_frames=tuple(
                SegFrame(fr.segment_number, tuple((u(x), n) for x, n in fr.sources), fr.position)
                for fr in h.seg_frames
            ),
        )

    def record(self, r: QuarantineRecord, urls: Iterable[str] = ()) -> QuarantineRecord:
        """A record made from raw identifiers: identifiers, UIDs in its text and URLs replaced."""
        known = {r.patient_id: self.patient_id(r.patient_id)} if r.patient_id else {}
        r = replace(
            r,
            patient_id=self.patient_id(r.patient_id),
            study_instance_uid=self.uid(r.study_instance_uid),
            series_instance_uid=self.uid(r.series_instance_uid),
            sop_instance_uid=self.uid(r.sop_instance_uid),
        )
        r = self.scrub_urls(r, urls)

        def text(s: str) -> str:
            for raw, pseudo in known.items():
                s = s.replace(raw, pseudo)
            return _UID_TOKEN.sub(lambda m: self.uid(m.group(0)), s)

        return replace(r, message=text(r.message), details=tuple((k, text(v)) for k, v in r.details))

    def scrub_urls(self, r: QuarantineRecord, urls: Iterable[str] = ()) -> QuarantineRecord:
        """``r`` with its URL, and every URL of ``urls`` in its text, replaced by pseudonyms."""
        all_urls = sorted({u for u in (r.url, *urls) if u}, key=len, reverse=True)

        def text(s: str) -> str:
            for u in all_urls:
                s = s.replace(u, self.url(u))
            return s

        return replace(
            r,
            url=self.url(r.url),
            message=text(r.message),
            details=tuple((k, text(v)) for k, v in r.details),
        )
