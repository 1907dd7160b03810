# Datagrams sent in compiled code: a run of export messages goes to a connected UDP
# socket in as few system calls as sendmmsg(2) allows, where a send() per message
# cost a call and its Python around it (pyprobe/transport.py's UdpTransport).

from libc.errno cimport errno, EINTR
from libc.string cimport memset
from posix.uio cimport iovec
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        void* msg_name
        unsigned int msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int sendmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags)

cdef enum:
    PER_CALL = 64        # messages per system call (the kernel takes up to 1024)


def send_datagrams(int fd, list messages):
    """Each message (bytes, or any buffer) as one datagram on the connected socket fd, in order. A message
    the kernel refuses is skipped and the rest go on, one per call from then on: a refusing
    collector (ICMP unreachable) is reported once per call, so each message then has its
    own error to count, as with a send() per message. Returns (sent, [(index, errno)] of
    the refused)."""
    cdef mmsghdr vec[PER_CALL]
    cdef iovec iov[PER_CALL]
    cdef Py_ssize_t n = len(messages), at = 0, k, count
    cdef int done, sent = 0
    cdef bint one_by_one = False
    cdef bytes message
    refused, keep = [], []
    memset(vec, 0, sizeof(vec))
    while at < n:
        count = 1 if one_by_one else min(<Py_ssize_t>PER_CALL, n - at)
        for k in range(count):
            item = messages[at + k]
            if type(item) is not bytes:
                item = bytes(item)
                keep.append(item)                 # (alive until it is sent)
            message = item
            iov[k].iov_base = PyBytes_AS_STRING(message)
            iov[k].iov_len = PyBytes_GET_SIZE(message)
            vec[k].msg_hdr.msg_iov = &iov[k]
            vec[k].msg_hdr.msg_iovlen = 1
        with nogil:                               # (the list holds the bytes)
            done = sendmmsg(fd, vec, <unsigned int>count, 0)
        if done < 0:
            if errno == EINTR:
                continue
            refused.append((at, errno))           # this one fails; the kernel said nothing of the rest
            done = 1
            one_by_one = True
        else:
            sent += done
        at += done
    return sent, refused
