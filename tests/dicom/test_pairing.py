"""Pairing rules on in-memory headers: acquisitions, duplicates, gaps, references, frames of reference."""

from __future__ import annotations

from dataclasses import replace

from builders import header, headers
from pydicom.uid import SegmentationStorage

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader, ReferencedSeries, SegFrame, Segment
from hcc_shards.dicom.pairing import (
    METHOD_FRAME_OF_REFERENCE,
    METHOD_REFERENCED_INSTANCES,
    METHOD_REFERENCED_SERIES,
    pair_patient,
)
from hcc_shards.labels import LIVER, TUMOR
from hcc_shards.quarantine import Reason

CONFIG = BuildConfig()
LIVER_AND_MASS = (
    Segment(1, "Liver", "SCT:10200004", "Liver"),
    Segment(2, "Mass", "SCT:4147007", "Mass"),
)


def seg_header(
    on: list[InstanceHeader],
    *,
    uid: str = "5.1",
    series_number: int = 300,
    with_series_ref: bool = True,
    with_frame_refs: bool = True,
    segments: tuple[Segment, ...] = LIVER_AND_MASS,
    frame_of_reference: str = "1.9",
) -> InstanceHeader:
    """A SEG header with one Liver frame per CT header in ``on``."""
    ct = on[0]
    frames = tuple(
        SegFrame(1, ((h.sop_instance_uid, 0),) if with_frame_refs else (), h.frame_positions[0]) for h in on
    )
    refs = (
        (ReferencedSeries(ct.series_instance_uid, tuple(h.sop_instance_uid for h in on)),)
        if with_series_ref
        else ()
    )
    return replace(
        ct,
        url=f"memory://seg/{uid}.dcm",
        sop_class_uid=str(SegmentationStorage),
        sop_instance_uid=uid,
        modality="SEG",
        series_instance_uid=f"{uid}.0",
        series_number=series_number,
        acquisition_number=None,
        frame_of_reference_uid=frame_of_reference,
        number_of_frames=len(frames),
        frame_positions=tuple(f.position for f in frames),
        segmentation_type="BINARY",
        segments=segments,
        referenced_series=refs,
        seg_frames=frames,
    )


ZS = [2.5 * k for k in range(12)]


def test_referenced_series_pairs_and_other_series_yield_nothing():
    ct = headers(ZS, series_uid="1.1")
    other = headers(ZS, series_uid="1.2")
    (pairing,), records = pair_patient([*other, *ct, seg_header(ct[2:8])], CONFIG)
    assert records == []
    assert pairing.method == METHOD_REFERENCED_SERIES
    assert pairing.ct_series_instance_uid == "1.1"
    assert pairing.geometry.shape == (12, 4, 4)
    assert pairing.frame_slices == (2, 3, 4, 5, 6, 7)
    assert dict(pairing.segment_labels) == {1: LIVER, 2: TUMOR}
    assert pair_patient([*other, *ct], CONFIG) == ([], [])


def test_stacked_phases_take_the_majority_acquisition_with_a_warning():
    art = headers(ZS, acquisition=2)
    pv = headers(ZS, acquisition=3)
    seg = seg_header([*pv[1:9], *art[9:11]])
    (pairing,), records = pair_patient([*art, *pv, seg], CONFIG)
    assert records == []
    assert pairing.acquisition_number == 3
    assert {s.sop_instance_uid for s in pairing.slices} == {h.sop_instance_uid for h in pv}
    assert "seg_frames_reference_2_acquisitions:chose_3_over_2" in pairing.warnings
    # frames referencing the other phase are placed by position on the chosen one
    assert pairing.frame_slices[-2:] == (9, 10)


def test_two_segs_on_one_acquisition_are_two_annotations_of_one_image():
    ct = headers(ZS)
    a, b = seg_header(ct[:4], uid="5.2", series_number=300), seg_header(ct[:6], uid="5.1", series_number=300)
    for order in ([*ct, a, b], [b, *ct, a]):
        pairings, records = pair_patient(order, CONFIG)
        assert records == []
        assert sorted(p.seg.sop_instance_uid for p in pairings) == ["5.1", "5.2"]
        assert len({p.image_key for p in pairings}) == 1


def test_two_files_of_one_seg_instance_are_a_duplicate_seg():
    ct = headers(ZS)
    seg = seg_header(ct[:4], uid="5.2")
    copy = replace(seg, url="memory://zz/copy-of-seg.dcm")
    for order in ([*ct, seg, copy], [copy, *ct, seg]):
        (pairing,), records = pair_patient(order, CONFIG)
        assert pairing.seg.url == min(seg.url, copy.url)
        assert [(r.code, r.url) for r in records] == [(Reason.DUPLICATE_SEG, max(seg.url, copy.url))]


def test_same_instance_twice_is_read_once():
    ct = headers(ZS)
    copy = replace(ct[3], url="memory://zz/copy.dcm")
    (pairing,), records = pair_patient([*ct, copy, seg_header(ct)], CONFIG)
    assert len(pairing.slices) == 12
    assert [(r.code, r.url) for r in records] == [(Reason.DUPLICATE_INSTANCE, "memory://zz/copy.dcm")]


def test_gap_inside_the_annotated_range_is_missing_slice():
    ct = headers([z for z in ZS if z != 12.5])
    (_, records) = pair_patient([*ct, seg_header(ct)], CONFIG)
    assert [r.code for r in records] == [Reason.MISSING_SLICE]
    assert "5.00 mm gap" in records[0].message


def test_gap_outside_the_annotated_range_decodes_the_block_with_a_warning():
    ct = headers([z for z in ZS if z != 5.0])
    (pairing,), records = pair_patient([*ct, seg_header(ct[3:9])], CONFIG)
    assert records == []
    assert pairing.geometry.shape == (9, 4, 4)
    assert pairing.slices[0].position[2] == 7.5
    assert "ct_stack_has_gap:decoded_block_of_9_of_11_slices" in pairing.warnings


def test_broken_series_quarantines_its_seg():
    ct = headers([0.0, 2.5, 5.0, 8.0, 10.5, 13.0])
    (_, records) = pair_patient([*ct, seg_header(ct)], CONFIG)
    assert [r.code for r in records] == [Reason.NON_UNIFORM_SPACING]
    assert records[0].stage == "series"


def test_frame_of_reference_mismatch():
    ct = headers(ZS)
    (_, records) = pair_patient([*ct, seg_header(ct, frame_of_reference="7.7")], CONFIG)
    assert [r.code for r in records] == [Reason.FRAME_OF_REFERENCE_MISMATCH]


def test_frames_on_absent_instances_off_the_stack():
    ct = headers(ZS)
    seg = seg_header(ct[:4])
    far = SegFrame(1, (("4.4.4", 0),), (0.0, 0.0, 100.0))
    seg = replace(seg, seg_frames=(*seg.seg_frames, far))
    (_, records) = pair_patient([*ct, seg], CONFIG)
    assert [r.code for r in records] == [Reason.SEG_REFERENCES_ABSENT_INSTANCES]
    assert "1 of 5 SEG frames" in records[0].message


def test_unknown_segments_are_reported_or_quarantined():
    ct = headers(ZS)
    odd = Segment(3, "Spleen", "SCT:78961009", "Spleen")
    (pairing,), _ = pair_patient([*ct, seg_header(ct, segments=(*LIVER_AND_MASS, odd))], CONFIG)
    assert pairing.unknown_segments == ("3:Spleen (SCT:78961009 Spleen)",)
    (_, records) = pair_patient([*ct, seg_header(ct, segments=(odd,))], CONFIG)
    assert [r.code for r in records] == [Reason.NO_KNOWN_SEGMENT]
    assert "Spleen" in records[0].message


def test_without_series_reference_instances_then_geometry_pair():
    ct = headers(ZS, series_uid="1.1")
    shifted = headers([z + 1.0 for z in ZS], series_uid="1.2")  # same frame of reference, other z grid
    seg = seg_header(ct[3:7], with_series_ref=False)
    (pairing,), _ = pair_patient([*shifted, *ct, seg], CONFIG)
    assert (pairing.method, pairing.ct_series_instance_uid) == (METHOD_REFERENCED_INSTANCES, "1.1")
    seg = seg_header(ct[3:7], with_series_ref=False, with_frame_refs=False)
    (pairing,), _ = pair_patient([*shifted, *ct, seg], CONFIG)
    assert (pairing.method, pairing.ct_series_instance_uid) == (METHOD_FRAME_OF_REFERENCE, "1.1")
    assert pairing.frame_slices == (3, 4, 5, 6)


def test_geometry_pairing_ties_are_deterministic_and_flagged():
    a, b = headers(ZS, series_uid="1.1"), headers(ZS, series_uid="1.2")
    seg = seg_header(a[:5], with_series_ref=False, with_frame_refs=False)
    results = [pair_patient(order, CONFIG)[0][0] for order in ([*a, *b, seg], [seg, *b, *a])]
    assert {p.ct_series_instance_uid for p in results} == {"1.1"}
    assert "frame_of_reference_match_ambiguous:2_stacks" in results[0].warnings


def test_seg_whose_series_is_absent_is_seg_without_ct():
    ct = headers(ZS, series_uid="1.1")
    seg = seg_header(ct[:3])
    (_, records) = pair_patient([seg], CONFIG)
    assert [r.code for r in records] == [Reason.SEG_WITHOUT_CT]
    other = header(0.0, series_uid="1.3")
    (_, records) = pair_patient(
        [other, replace(seg, frame_of_reference_uid="8.8", referenced_series=())], CONFIG
    )
    assert [r.code for r in records] == [Reason.SEG_WITHOUT_CT]


def test_stacked_phases_without_references_fall_back_to_positions():
    art = headers(ZS, acquisition=2)
    pv = headers([z + 1.25 for z in ZS], acquisition=3)  # interleaved grid: positions tell them apart
    seg = seg_header(pv[2:6], with_series_ref=False, with_frame_refs=False)
    seg = replace(seg, referenced_series=(ReferencedSeries("1.2.3", ()),))
    (pairing,), records = pair_patient([*art, *pv, seg], CONFIG)
    assert records == [] and pairing.acquisition_number == 3
    assert pairing.method == METHOD_REFERENCED_SERIES and pairing.warnings == ()
    same = headers(ZS, acquisition=3)
    seg = replace(
        seg_header(same[2:6], with_frame_refs=False), referenced_series=(ReferencedSeries("1.2.3", ()),)
    )
    (pairing,), _ = pair_patient([*art, *same, seg], CONFIG)
    assert pairing.acquisition_number == 2
    assert pairing.warnings == ("acquisition_chosen_by_position:2_of_2_tied",)


def test_seg_without_per_frame_groups_is_unsupported():
    ct = headers(ZS)
    (_, records) = pair_patient([*ct, replace(seg_header(ct), seg_frames=())], CONFIG)
    assert [r.code for r in records] == [Reason.UNSUPPORTED_SEG]
