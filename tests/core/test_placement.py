"""Placement: best fit, blocks, NVLink domains, slices, node state, CPU/memory, regions, models.

Node names come from the builders: ``eh200-<i>`` for h200 nodes in japan-east, in name order.
"""

from __future__ import annotations

import pytest

from kumo.core import NodeState, Profile, Topology, schedule, slice_milli
from kumo.core.classes import shape_of
from kumo.core.model import Job
from kumo.core.placement import place
from tests.core.builders import cluster

PLAIN = Profile(order="fifo", preemption=False, reclaim=False, backfill=False, heterogeneity=False)
BIG = {"gpu.h200": 1000}  # quota is not under test here


def run(snap, profile=PLAIN):
    return schedule(snap, 0.0, profile)


def workers(decisions, job_id):
    """[(node, gpus, milli)] per worker, in rank order."""
    return [(w.node, w.gpus, w.gpu_milli) for w in decisions.started()[job_id].workers]


def whole(*entries):
    return [(node, tuple(gpus), 1000) for node, gpus in entries]


# --------------------------------------------------------------------------- whole GPUs


def _fragmented():
    """eh200-0: 6 free (GPUs 2-7), -1: 3 free (5-7), -2: 4 free (4-7), -3: 8 free."""
    return (cluster().pool("japan-east", "h200", nodes=4).queue("q", BIG)
            .running_job("r0", [("eh200-0", (0, 1))])
            .running_job("r1", [("eh200-1", (0, 1, 2, 3, 4))])
            .running_job("r2", [("eh200-2", (0, 1, 2, 3))]))


@pytest.mark.parametrize(("gpus", "expected"), [
    (1, whole(("eh200-1", [5]))),
    (3, whole(("eh200-1", [5, 6, 7]))),
    (4, whole(("eh200-2", [4, 5, 6, 7]))),
    (5, whole(("eh200-0", [2, 3, 4, 5, 6]))),
    (6, whole(("eh200-0", [2, 3, 4, 5, 6, 7]))),
    (7, whole(("eh200-3", range(7)))),
    (8, whole(("eh200-3", range(8)))),
])
def test_single_node_best_fit(gpus, expected):
    d = run(_fragmented().job("j", gpus=gpus).snapshot())
    assert workers(d, "j") == expected


def test_single_node_gang_best_fit():
    d = run(_fragmented().job("j", gpus=2, workers=2).snapshot())
    assert workers(d, "j") == whole(("eh200-2", [4, 5]), ("eh200-2", [6, 7]))


def test_best_fit_tie_goes_to_lowest_node_name():
    snap = (cluster().pool("japan-east", "h200", nodes=3).queue("q", BIG)
            .running_job("r2", [("eh200-2", (0, 1, 2, 3, 4))])
            .running_job("r1", [("eh200-1", (3, 4, 5, 6, 7))])
            .job("j", gpus=3).snapshot())
    assert workers(run(snap), "j") == whole(("eh200-1", [0, 1, 2]))


def test_gang_stays_in_one_block_on_fewest_nodes():
    # b0 = {eh200-0: 8 free, eh200-1: 2 free}, b1 = {eh200-2: 6 free, eh200-3: 6 free}.
    # Largest nodes first over the pool would take eh200-0 + eh200-2 (two blocks); b1 also
    # holds the 6 x 2-GPU gang on 2 nodes, so it stays there.
    snap = (cluster().pool("japan-east", "h200", nodes=4, block_size=2).queue("q", BIG)
            .running_job("r1", [("eh200-1", (0, 1, 2, 3, 4, 5))])
            .running_job("r2", [("eh200-2", (0, 1))])
            .running_job("r3", [("eh200-3", (0, 1))])
            .job("j", gpus=2, workers=6).snapshot())
    assert workers(run(snap), "j") == whole(
        ("eh200-2", [2, 3]), ("eh200-2", [4, 5]), ("eh200-2", [6, 7]),
        ("eh200-3", [2, 3]), ("eh200-3", [4, 5]), ("eh200-3", [6, 7]),
    )


def _two_blocks():
    """b0 = eh200-0..2, b1 = eh200-3..5; eh200-0 and eh200-3 free, the others half used."""
    b = cluster().pool("japan-east", "h200", nodes=6, block_size=3).queue("q", BIG)
    for i in (1, 2, 4, 5):
        b.running_job(f"r{i}", [(f"eh200-{i}", (0, 1, 2, 3))])
    return b


def test_gang_spans_blocks_when_that_uses_fewer_nodes():
    # 4 x 4 GPUs: each block needs 3 nodes, the two empty nodes of different blocks need 2
    d = run(_two_blocks().job("j", gpus=4, workers=4).snapshot())
    assert workers(d, "j") == whole(
        ("eh200-0", [0, 1, 2, 3]), ("eh200-0", [4, 5, 6, 7]),
        ("eh200-3", [0, 1, 2, 3]), ("eh200-3", [4, 5, 6, 7]),
    )


def test_block_topology_keeps_gang_in_one_block():
    d = run(_two_blocks().job("j", gpus=4, workers=4, topology=Topology.BLOCK).snapshot())
    assert workers(d, "j") == whole(
        ("eh200-0", [0, 1, 2, 3]), ("eh200-0", [4, 5, 6, 7]),
        ("eh200-1", [4, 5, 6, 7]), ("eh200-2", [4, 5, 6, 7]),
    )


def test_block_topology_not_satisfiable_now():
    d = run(_two_blocks().job("j", gpus=4, workers=5, topology=Topology.BLOCK).snapshot())
    assert d.started() == {}
    assert str(d.why("j")) == ("placement: needs 20 h200 GPUs in one block in japan-east; "
                               "the largest free block has 16")


def test_node_topology_not_satisfiable_now():
    snap = (_fragmented().running_job("r3", [("eh200-3", (0,))])
            .job("j", gpus=4, workers=2, topology=Topology.NODE).snapshot())
    d = run(snap)
    assert d.started() == {}
    assert str(d.why("j")) == ("placement: needs 8 h200 GPUs in one node in japan-east; "
                               "the largest free node has 7")


@pytest.mark.parametrize(("nvlink_size", "nodes"), [
    (2, ["eh200-2", "eh200-3"]),  # the free NVLink domain eh200-nv1
    (None, ["eh200-1", "eh200-2"]),  # no multi-node domains: largest nodes, lowest names
])
def test_multi_node_nvlink_domain_preferred(nvlink_size, nodes):
    snap = (cluster().pool("japan-east", "h200", nodes=4, gpus=4, nvlink_size=nvlink_size)
            .queue("q", BIG)
            .running_job("r", [("eh200-0", (0,))])
            .job("j", gpus=4, workers=2).snapshot())
    assert workers(run(snap), "j") == whole((nodes[0], range(4)), (nodes[1], range(4)))


def test_nvlink_topology_not_satisfiable_now():
    snap = (cluster().pool("japan-east", "h200", nodes=4, gpus=4, nvlink_size=2)
            .queue("q", BIG)
            .running_job("r0", [("eh200-0", (0,))])
            .running_job("r2", [("eh200-2", (0,))])
            .job("j", gpus=4, workers=2, topology=Topology.NVLINK).snapshot())
    d = run(snap)
    assert str(d.why("j")) == ("placement: needs 8 h200 GPUs in one NVLink domain in japan-east; "
                               "the largest free NVLink domain has 4")


# --------------------------------------------------------------------------- slices


def _partial():
    """eh200-0: GPU 0 has 500 free; eh200-1: GPU 1 has 100 free, GPUs 2-5 in use."""
    return (cluster().pool("japan-east", "h200", nodes=2).queue("q", BIG)
            .running_job("s0", [("eh200-0", (0,))], gpu_milli=500)
            .running_job("s1", [("eh200-1", (1,))], gpu_milli=900)
            .running_job("w1", [("eh200-1", (2, 3, 4, 5))]))


@pytest.mark.parametrize(("milli", "expected"), [
    (100, ("eh200-1", (1,))),  # the partly used GPU with the least room that fits
    (142, ("eh200-0", (0,))),
    (500, ("eh200-0", (0,))),
    (600, ("eh200-1", (0,))),  # none fits: open a GPU on the fullest node (3 whole free)
])
def test_slice_goes_to_tightest_partial_gpu_else_fullest_node(milli, expected):
    d = run(_partial().job("j", gpu_milli=milli).snapshot())
    assert workers(d, "j") == [(*expected, milli)]


def _per_gpu(slots):
    used = {}
    for node, gpus, milli in slots:
        for g in gpus:
            used[(node, g)] = used.get((node, g), 0) + milli
    return used


def test_sevenths_fill_one_gpu_before_opening_the_next():
    one_seventh = slice_milli(1, 7)
    assert one_seventh == 142
    snap = (cluster().pool("japan-east", "h200", nodes=1, gpus=2).queue("q", BIG)
            .job("g", gpu_milli=one_seventh, workers=8).snapshot())
    slots = workers(run(snap), "g")
    assert slots == [("eh200-0", (0,), 142)] * 7 + [("eh200-0", (1,), 142)]
    assert _per_gpu(slots) == {("eh200-0", 0): 994, ("eh200-0", 1): 142}


def test_separate_slice_jobs_pack_and_never_exceed_a_gpu():
    b = cluster().pool("japan-east", "h200", nodes=1, gpus=2).queue("q", BIG)
    for i in range(5):
        b.job(f"s{i}", gpu_milli=slice_milli(3, 7))
    d = run(b.snapshot())
    got = [workers(d, f"s{i}")[0] for i in range(4)]
    assert got == [("eh200-0", (0,), 428), ("eh200-0", (0,), 428),
                   ("eh200-0", (1,), 428), ("eh200-0", (1,), 428)]
    assert _per_gpu(got) == {("eh200-0", 0): 856, ("eh200-0", 1): 856}
    assert str(d.why("s4")) == ("placement: needs 1 slice of 0.428 h200 GPU in japan-east; "
                                "the roomiest GPU has 0.144 free")


def test_slice_opens_gpu_on_fullest_node():
    snap = (cluster().pool("japan-east", "h200", nodes=2).queue("q", BIG)
            .running_job("r0", [("eh200-0", (0, 1))])
            .running_job("r1", [("eh200-1", (0, 1, 2, 3, 4))])
            .job("j", gpu_milli=250).snapshot())
    assert workers(run(snap), "j") == [("eh200-1", (5,), 250)]


# --------------------------------------------------------------------------- node state, cpu, mem


def _states():
    return (cluster()
            .pool("japan-east", "h200", nodes=1, prefix="a", state=NodeState.DOWN)
            .pool("japan-east", "h200", nodes=1, prefix="b", state=NodeState.DRAINED)
            .pool("japan-east", "h200", nodes=1, gpus=4, prefix="c")
            .queue("q", BIG))


@pytest.mark.parametrize(("kw", "expected"), [
    ({"gpus": 1}, [("c0", (0,), 1000)]),
    ({"gpus": 4}, [("c0", (0, 1, 2, 3), 1000)]),
    ({"gpu_milli": 142}, [("c0", (0,), 142)]),
])
def test_down_and_drained_nodes_get_no_new_work(kw, expected):
    d = run(_states().job("j", **kw).snapshot())
    assert workers(d, "j") == expected


def test_down_and_drained_nodes_do_not_count_as_free():
    d = run(_states().job("j", gpus=8).snapshot())
    assert str(d.why("j")) == ("placement: needs 8 h200 GPUs in japan-east; 4 free, "
                               "the largest free node has 4")
    snap = _states().job("j", gpus=1).snapshot()
    snap.set_node_state("c0", NodeState.DRAINED)
    assert str(run(snap).why("j")) == ("placement: needs 1 h200 GPUs in japan-east; 0 free, "
                                       "the largest free node has 0")


def _cpu_mem():
    return (cluster().pool("japan-east", "h200", nodes=2, cpu_milli=16000, mem_mib=65536)
            .queue("q", BIG)
            .running_job("r", [("eh200-0", (0,))], cpu_milli=8000, mem_mib=1024))


@pytest.mark.parametrize(("kw", "expected"), [
    ({"cpu_milli": 8000}, whole(("eh200-0", [1]))),  # best fit, 8 cores left there
    ({"cpu_milli": 12000}, whole(("eh200-1", [0]))),
    ({"mem_mib": 64512}, whole(("eh200-0", [1]))),
    ({"mem_mib": 64513}, whole(("eh200-1", [0]))),
    ({"gpus": 4, "workers": 2, "cpu_milli": 6000}, whole(("eh200-1", [0, 1, 2, 3]),
                                                         ("eh200-1", [4, 5, 6, 7]))),
])
def test_node_cpu_and_memory_limits(kw, expected):
    d = run(_cpu_mem().job("j", **kw).snapshot())
    assert workers(d, "j") == expected


def test_cpu_limit_spreads_gang_or_blocks_it():
    snap = (cluster().pool("japan-east", "h200", nodes=2, cpu_milli=16000).queue("q", BIG)
            .job("j", gpus=4, workers=2, cpu_milli=10000).snapshot())
    assert workers(run(snap), "j") == whole(("eh200-0", range(4)), ("eh200-1", range(4)))
    d = run(_cpu_mem().job("j", gpus=4, workers=2, cpu_milli=10000).snapshot())
    assert str(d.why("j")) == ("placement: needs 2 workers x 4 h200 GPUs in japan-east; the free "
                               "GPUs are on nodes without enough CPU or memory")


def test_place_directly_and_cpu_is_given_back_after_a_slice_gang():
    snap = _cpu_mem().snapshot()
    pool = snap.cluster.pools[0]
    job = Job("x", "q", "q", workers=3, gpu_milli=400, cpu_milli=4000)
    slots = place(snap.cluster, pool, shape_of(job))
    # eh200-0 (fullest) gets GPU 1 twice (800 milli) and, with 8 cores left, only 2 workers
    assert slots == [(0, (1,), 400), (0, (1,), 400), (1, (0,), 400)]
    assert snap.cluster.table.cpu_free == [8000, 16000]  # trial takes were given back


# --------------------------------------------------------------------------- regions and models


def _regions():
    return (cluster().pool("japan-east", "h200", nodes=1).pool("japan-west", "h200", nodes=1)
            .queue("q", BIG)
            .running_job("r", [("eh200-0", (0, 1, 2, 3, 4))]))


@pytest.mark.parametrize(("kw", "node", "region"), [
    ({}, "eh200-0", "japan-east"),
    ({"regions": ("japan-west",)}, "wh200-0", "japan-west"),
    ({"regions": ("japan-west", "japan-east")}, "wh200-0", "japan-west"),
    ({"regions": ("japan-east", "japan-west"), "gpus": 4}, "wh200-0", "japan-west"),
])
def test_region_constraints_and_preference(kw, node, region):
    d = run(_regions().job("j", **{"gpus": 2, **kw}).snapshot())
    assert d.started()["j"].region == region
    assert d.started()["j"].nodes == (node,)


def _models(h200_busy=False):
    b = cluster().pool("japan-east", "h100", nodes=1).pool("japan-east", "h200", nodes=1)
    b.queue("q", {**BIG, "gpu.h100": 1000})
    if h200_busy:
        b.running_job("r", [("eh200-0", tuple(range(8)))])
    return b


@pytest.mark.parametrize(("kw", "busy", "model"), [
    ({}, False, "h100"),  # no preference: models in name order
    ({"gpu_models": ("h200", "h100")}, False, "h200"),
    ({"gpu_models": ("h100", "h200")}, False, "h100"),
    ({"speeds": {"h200": 2.0, "h100": 1.0}}, False, "h200"),
    ({"speeds": {"h200": 2.0, "h100": 1.0}}, True, "h100"),
    ({"gpu_models": ("h100", "h200"), "speeds": {"h200": 2.0, "h100": 1.0}}, False, "h200"),
])
def test_model_preference_and_heterogeneity(kw, busy, model):
    profile = Profile(order="fifo", preemption=False, reclaim=False, backfill=False)
    d = run(_models(busy).job("j", **kw).snapshot(), profile)
    assert d.started()["j"].model == model
    assert d.started()["j"].nodes == (f"e{model}-0",)


def test_slice_does_not_use_a_partial_gpu_on_a_reserved_node():
    # big is promised eh200-0 at t=100 (s and w end then); j has no walltime, so it would delay it
    snap = (cluster().pool("japan-east", "h200", nodes=2).queue("q", BIG)
            .running_job("s", [("eh200-0", (0,))], gpu_milli=500, walltime_estimate_s=100)
            .running_job("w", [("eh200-0", (1, 2, 3, 4, 5, 6, 7))], walltime_estimate_s=100)
            .running_job("w2", [("eh200-1", tuple(range(8)))], walltime_estimate_s=1000)
            .job("big", gpus=8).job("j", gpu_milli=400).snapshot())
    d = run(snap, Profile(order="fifo", preemption=False, reclaim=False, heterogeneity=False))
    assert [(r.job_id, r.start_at, r.nodes) for r in d.reservations] == [
        ("big", 100.0, (("eh200-0", 8),))]
    # actual: j starts on eh200-0 GPU 0 (x0.4), where big needs all 8 GPUs at t=100
    assert d.started() == {}
    assert str(d.why("j")) == (
        "backfill: would delay job big, which holds a reservation on japan-east/h200 starting in "
        "1m; a walltime estimate under that would let it backfill")
