"""Buffers from Python data and back: bytes, numpy, the buffer protocol, DLPack."""

import array
import threading

import pytest

import vuma

np = pytest.importorskip("numpy")


def test_create_buffer_is_zeros_and_lazy(host):
    b = host.create_buffer(1 << 20)
    assert b.nbytes == len(b) == 1 << 20
    assert host.stats()["locations"][0]["bytes_in_use"] == 0
    assert b.to_bytes() == bytes(1 << 20)
    assert b.to_numpy().dtype == np.uint8


def test_bytes_and_bytearray_round_trip(host):
    data = bytes(range(256)) * 16
    for src in (data, bytearray(data), memoryview(data)):
        b = host.create_buffer_from(src)
        assert b.to_bytes() == data


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8", "uint16", "int32", "uint64", "bool"])
def test_numpy_arrays_keep_dtype_and_shape(host, dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    b = host.create_buffer_from(a)
    assert b.nbytes == a.nbytes
    assert tuple(b.shape) == a.shape
    out = b.to_numpy()
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)
    out[0, 0, 0] = 1  # a fresh, writable array
    np.testing.assert_array_equal(b.to_numpy(), a)


def test_readonly_and_sliced_numpy(host):
    a = np.arange(1000, dtype=np.float32)
    a.setflags(write=False)
    np.testing.assert_array_equal(host.create_buffer_from(a).to_numpy(), a)
    # A contiguous slice with an offset is read from its own first element.
    np.testing.assert_array_equal(host.create_buffer_from(a[10:20]).to_numpy(), a[10:20])
    with pytest.raises(vuma.InvalidArgumentError, match="contiguous"):
        host.create_buffer_from(a[::2])
    with pytest.raises(vuma.InvalidArgumentError, match="contiguous"):
        host.create_buffer_from(np.arange(12, dtype=np.int32).reshape(3, 4).T)


def test_the_buffer_protocol_fallback(host):
    a = array.array("f", [1.0, 2.0, 3.0])
    b = host.create_buffer_from(a)
    assert b.dtype == "<f4"
    np.testing.assert_array_equal(b.to_numpy(), np.array([1, 2, 3], dtype=np.float32))
    with pytest.raises(vuma.InvalidArgumentError, match="cannot read the bytes"):
        host.create_buffer_from(object())


def test_dtype_override_and_element_size(host):
    b = host.create_buffer_from(np.arange(4, dtype=np.float32))
    assert b.to_numpy(np.uint32).tolist() == np.arange(4, dtype=np.float32).view(np.uint32).tolist()
    odd = host.create_buffer_from(b"12345")
    with pytest.raises(vuma.ElementSizeError):
        odd.to_numpy(np.float32)
    c = host.create_buffer(16, dtype="float32", shape=[2, 2])
    assert c.to_numpy().shape == (2, 2)


def test_write_at_offset(host):
    b = host.create_buffer(16, dtype=np.uint8)
    b.write(b"\x01\x02", offset=4)
    b.write(np.array([7, 7], dtype=np.uint8), offset=14)
    assert b.to_bytes() == bytes([0, 0, 0, 0, 1, 2] + [0] * 8 + [7, 7])


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool"])
def test_dlpack_export_keeps_every_dtype(host, dtype):
    a = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    back = np.from_dlpack(host.create_buffer_from(a))
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)


def test_dlpack_out_and_in(host):
    a = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    b = host.create_buffer_from(a)
    assert b.__dlpack_device__() == (1, 0)
    back = np.from_dlpack(b)
    np.testing.assert_array_equal(back, a)
    # A numpy array read through __dlpack__ (not its array interface).
    class OnlyDlpack:
        def __init__(self, x):
            self.x = x

        def __dlpack__(self, **kw):
            return self.x.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.x.__dlpack_device__()

    c = host.create_buffer_from(OnlyDlpack(a))
    assert c.dtype == "<f4" and tuple(c.shape) == (8, 8)
    np.testing.assert_array_equal(c.to_numpy(), a)
    with pytest.raises(BufferError):
        b.__dlpack__(copy=False)


def test_host_reads_release_the_gil(host):
    # Several threads copy in and out at once; each sees its own data.
    errors = []

    def work(i):
        try:
            a = np.full(1 << 18, i, dtype=np.int32)
            b = host.create_buffer_from(a)
            assert (b.to_numpy() == i).all()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_prefetch_reports_what_moved(any_backend):
    m = any_backend
    a = np.arange(1 << 16, dtype=np.float32)
    b = m.create_buffer_from(a)
    r = b.prefetch()
    # The host device uses the host copy in place: nothing moves, no copy is made.
    assert r["bytes_moved"] == (0 if r["in_place"] else a.nbytes)
    names = [d["name"] for d in m.devices()]
    assert r["device"] in names
    # By name, by index and by backend: the same copy, already there.
    assert b.prefetch(r["device"])["hit"]
    assert b.prefetch(names.index(r["device"]))["hit"]
    assert b.prefetch()["hit"]
    assert r["in_place"] or any(loc != "host memory" and valid for loc, _, valid in b.residency())
    np.testing.assert_array_equal(b.to_numpy(), a)
    with pytest.raises(vuma.InvalidArgumentError):
        b.prefetch(99)


def test_create_buffer_from_onto_a_device(any_backend):
    m = any_backend
    a = np.arange(3 << 16, dtype=np.float32)  # several fill units
    dev = m.create_buffer(4096).prefetch()["device"]
    b = m.create_buffer_from(a, device=dev)
    assert b.dtype == "<f4" and tuple(b.shape) == a.shape
    r = b.prefetch(dev)
    assert r["hit"], "resident already: nothing moves"
    np.testing.assert_array_equal(b.to_numpy(), a)
    assert r["in_place"] or any(loc != "host memory" and valid for loc, _, valid in b.residency())
    with pytest.raises(vuma.InvalidArgumentError):
        m.create_buffer_from(a, device=99)
    with pytest.raises(vuma.ZeroSizeError):
        m.create_buffer_from(b"", device=dev)


def test_odd_array_interfaces_are_errors_not_crashes(host):
    class Weird:
        def __init__(self, ai):
            self.__array_interface__ = ai

    base = np.arange(8, dtype=np.float32)
    good = dict(base.__array_interface__)
    for bad in (
        {**good, "strides": (4, 4)},         # strides and shape disagree
        {**good, "typestr": "O"},            # no fixed item size
        {**good, "shape": (-1,)},            # negative dimension
        {**good, "shape": (1 << 62, 1 << 62)},  # size overflows
    ):
        with pytest.raises((vuma.VumaError, OverflowError, ValueError, TypeError)):
            host.create_buffer_from(Weird(bad))
    b = host.create_buffer(16, dtype="float32", shape=[1 << 62, 1 << 62])
    assert b.to_numpy().shape == (4,)
