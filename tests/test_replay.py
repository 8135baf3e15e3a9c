import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.data import Transition, mixer, replay


def batch(values, obs_dim=2, action_dim=1):
    """Transitions whose every field encodes its id, so contents can be checked exactly."""
    v = jnp.asarray(values, jnp.float32)
    t = Transition.zeros(obs_dim, action_dim, (len(values),))
    return t.replace(
        obs=jnp.repeat(v[:, None], obs_dim, 1),
        action=v[:, None],
        reward=v,
        next_obs=jnp.repeat(v[:, None] + 0.5, obs_dim, 1),
    )


def test_wrap_around_contents_after_adds_crossing_the_end():
    buf = replay.init(5, 2, 1)
    buf = replay.add(buf, batch([1, 2, 3]))
    assert int(buf.size) == 3 and int(buf.insert_pos) == 3
    buf = replay.add(buf, batch([4, 5, 6]))  # 6 wraps to slot 0
    np.testing.assert_array_equal(buf.data.reward, [6, 2, 3, 4, 5])
    buf = replay.add(buf, batch([7, 8, 9, 10]))  # slots 1,2,3,4
    np.testing.assert_array_equal(buf.data.reward, [6, 7, 8, 9, 10])
    np.testing.assert_array_equal(buf.data.obs[:, 0], [6, 7, 8, 9, 10])
    assert int(buf.size) == 5 and int(buf.insert_pos) == 0


def test_add_more_than_capacity_keeps_newest():
    buf = replay.add(replay.init(3, 2, 1), batch([1, 2]))
    buf = replay.add(buf, batch([3, 4, 5, 6, 7]))
    assert sorted(np.asarray(buf.data.reward).tolist()) == [5, 6, 7]
    # the ring order continues as if the rows were written one by one
    ref = replay.init(3, 2, 1)
    for v in [1, 2, 3, 4, 5, 6, 7]:
        ref = replay.add(ref, batch([v]))
    np.testing.assert_array_equal(buf.data.reward, ref.data.reward)
    assert int(buf.insert_pos) == int(ref.insert_pos)


def test_extend_appends_the_filled_rows_of_another_buffer_in_order():
    buf = replay.add(replay.init(5, 2, 1), batch([1, 2, 3]))
    staged = replay.add(replay.init(4, 2, 1), batch([7, 8, 9]))  # 3 of its 4 rows filled
    buf = jax.jit(replay.extend)(buf, staged)  # 9 wraps to slot 0
    assert int(buf.size) == 5 and int(buf.insert_pos) == 1
    np.testing.assert_array_equal(buf.data.reward, [9, 2, 3, 7, 8])
    with pytest.raises(ValueError, match="capacity 5"):
        replay.extend(buf, replay.init(6, 2, 1))


def test_sample_covers_exactly_the_filled_part_and_stacks_utd():
    buf = replay.add(replay.init(100, 2, 1), batch(list(range(1, 8))))
    out = replay.sample(buf, jax.random.key(0), 64, num_batches=20)
    assert out.obs.shape == (20, 64, 2) and out.reward.shape == (20, 64)
    assert set(np.asarray(out.reward).ravel().tolist()) == set(range(1, 8))


def test_add_and_sample_under_jit_vmap_and_donation():
    seeds = 3
    bufs = jax.vmap(lambda _: replay.init(4, 2, 1))(jnp.arange(seeds))
    new = jax.vmap(lambda s: batch([1, 2, 3]).replace(reward=s * 10.0 + jnp.arange(3.0)))(
        jnp.arange(seeds, dtype=jnp.float32)
    )
    add = jax.jit(jax.vmap(replay.add), donate_argnums=0)
    bufs = add(bufs, new)
    bufs = add(bufs, new)  # wraps: slots 3,0,1
    np.testing.assert_array_equal(bufs.data.reward[1], [11, 12, 12, 10])
    keys = jax.random.split(jax.random.key(1), seeds)
    out = jax.jit(jax.vmap(lambda b, k: replay.sample(b, k, 16, 2)))(bufs, keys)
    assert out.reward.shape == (seeds, 2, 16)
    for s in range(seeds):
        assert set(np.asarray(out.reward[s]).ravel()) <= {10 * s + 0, 10 * s + 1, 10 * s + 2}


def test_split_counts_exact_and_validated():
    assert mixer.split_counts(256, [0.5, 0.5]) == (128, 128)
    assert mixer.split_counts(10, [1, 1, 1]) == (4, 3, 3)
    assert sum(mixer.split_counts(257, [0.3, 0.2, 0.5])) == 257
    assert mixer.split_counts(8, [1, 0]) == (8, 0)
    with pytest.raises(ValueError, match="ratios"):
        mixer.split_counts(8, [0, 0])
    with pytest.raises(ValueError, match="batch_size"):
        mixer.split_counts(0, [1])


def test_mixer_exact_counts_from_partly_filled_sources():
    offline = replay.from_transitions(batch([1, 2, 3, 4]))
    online = replay.add(replay.init(50, 2, 1), batch([100, 101]))  # 2 of 50 filled
    synthetic = replay.add(replay.init(10, 2, 1), batch([-5]))
    counts = mixer.split_counts(20, [0.5, 0.25, 0.25])
    out = mixer.sample_mixed([offline, online, synthetic], counts, jax.random.key(0))
    r = np.asarray(out.reward)
    assert counts == (10, 5, 5)
    assert set(r[:10]) <= {1, 2, 3, 4}
    assert set(r[10:15]) <= {100, 101}
    assert set(r[15:]) == {-5}
    stacked = mixer.sample_mixed([offline, online], (3, 1), jax.random.key(1), num_batches=7)
    assert stacked.reward.shape == (7, 4)
    assert set(np.asarray(stacked.reward[:, 3])) <= {100, 101}
