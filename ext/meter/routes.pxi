# Routes (pyprobe._meter, included by ext/_meter.pyx): a longest-prefix-match trie per IP
# version, looked up once per flow, and what a flow keeps of its match.

cdef struct Route:
    uint8_t next_hop[16]     # IPv4 in the first 4 bytes; zeros: directly connected
    uint32_t out_if          # ifIndex
    uint32_t origin_as
    uint8_t length           # prefix length


cdef struct RouteNode:
    int32_t child[2]         # node indices, 0: none (node 0 is the root)
    int32_t route            # index into the routes, -1: no route ends here


cdef struct RouteTrie:       # (a RouteTable's, for code without the GIL: the route extension's context)
    RouteNode* nodes[2]
    Route* routes


cdef class RouteTable:
    """A routing table for flows (--routes): prefix -> next hop, output interface, origin AS.
    A binary trie per IP version; a flow looks up its addresses once, when it starts (an
    AS-keyed record's meter looks every packet's up: its AS makes its key)."""
    cdef RouteTrie trie
    cdef Py_ssize_t n_nodes[2]
    cdef Py_ssize_t node_cap[2]
    cdef Py_ssize_t n_routes
    cdef Py_ssize_t route_cap

    def __cinit__(self):
        cdef int v
        for v in range(2):
            self.trie.nodes[v] = <RouteNode*>calloc(1, sizeof(RouteNode))
            if self.trie.nodes[v] == NULL:
                raise MemoryError("cannot allocate a route table")
            self.trie.nodes[v][0].route = -1
            self.n_nodes[v] = self.node_cap[v] = 1

    def __dealloc__(self):
        free(self.trie.nodes[0])
        free(self.trie.nodes[1])
        free(self.trie.routes)

    def __len__(self):
        return self.n_routes

    def add(self, int ipver, const uint8_t[::1] prefix, int length, const uint8_t[::1] next_hop, uint32_t out_if,
            uint32_t origin_as):
        """A route: prefix (4 or 16 bytes) of `length` bits; the same prefix again replaces it."""
        cdef int v = 1 if ipver == 6 else 0, bit
        cdef int size = 16 if v else 4
        cdef Py_ssize_t at = 0
        cdef int32_t child
        cdef Route* r
        if ipver not in (4, 6) or prefix.shape[0] != size or next_hop.shape[0] != size or not 0 <= length <= 8 * size:
            raise ValueError("a route: IPv4 or IPv6 prefix and next hop of its size, a length that fits")
        for bit in range(length):
            child = self.trie.nodes[v][at].child[bit_at(&prefix[0], bit)]
            if child == 0:
                child = self._new_node(v)
                self.trie.nodes[v][at].child[bit_at(&prefix[0], bit)] = child
            at = child
        if self.trie.nodes[v][at].route < 0:
            if self.n_routes == self.route_cap:
                self.route_cap = max(16, 2 * self.route_cap)
                r = <Route*>realloc(self.trie.routes, self.route_cap * sizeof(Route))
                if r == NULL:
                    raise MemoryError("cannot grow the route table")
                self.trie.routes = r
            self.trie.nodes[v][at].route = <int32_t>self.n_routes
            self.n_routes += 1
        r = &self.trie.routes[self.trie.nodes[v][at].route]
        memset(r, 0, sizeof(Route))
        memcpy(r.next_hop, &next_hop[0], size)
        r.out_if = out_if
        r.origin_as = origin_as
        r.length = length

    cdef int32_t _new_node(self, int v) except -1:
        cdef RouteNode* grown
        if self.n_nodes[v] == self.node_cap[v]:
            grown = <RouteNode*>realloc(self.trie.nodes[v], 2 * self.node_cap[v] * sizeof(RouteNode))
            if grown == NULL:
                raise MemoryError("cannot grow the route table")
            self.trie.nodes[v] = grown
            self.node_cap[v] *= 2
        self.trie.nodes[v][self.n_nodes[v]].child[0] = 0
        self.trie.nodes[v][self.n_nodes[v]].child[1] = 0
        self.trie.nodes[v][self.n_nodes[v]].route = -1
        self.n_nodes[v] += 1
        return <int32_t>(self.n_nodes[v] - 1)

    def lookup(self, int ipver, const uint8_t[::1] address):
        """(next hop bytes, out_if, origin AS, prefix length) of the longest prefix holding
        the address, or None (tests read the table with it)."""
        cdef const Route* r = route_of(self.trie.nodes[1 if ipver == 6 else 0], self.trie.routes, &address[0],
                                       128 if ipver == 6 else 32)
        if r == NULL:
            return None
        return bytes(r.next_hop[:16 if ipver == 6 else 4]), r.out_if, r.origin_as, r.length


cdef inline int bit_at(const uint8_t* address, int bit) noexcept nogil:
    """Bit `bit` of an address, counting from its most significant bit."""
    return (address[bit >> 3] >> (7 - (bit & 7))) & 1


cdef inline const Route* route_of(const RouteNode* nodes, const Route* routes, const uint8_t* address,
                                  int bits) noexcept nogil:
    """The longest-prefix match of an address in one IP version's trie, or NULL."""
    cdef Py_ssize_t at = 0
    cdef int32_t best = nodes[0].route
    cdef int bit
    for bit in range(bits):
        at = nodes[at].child[bit_at(address, bit)]
        if at == 0:
            break
        if nodes[at].route >= 0:
            best = nodes[at].route
    return &routes[best] if best >= 0 else NULL


cdef enum:
    AS_SOURCE = 1            # an AS-keyed record's (Definition.route_as): the source address's
    AS_DESTINATION = 2       # route's origin AS in its place in the key, the destination's

AS_KEYED = {"src": AS_SOURCE, "dst": AS_DESTINATION}     # (by FlowKey member, for pyprobe/definitions.py)


cdef inline void as_in_place(RouteTable routes, uint8_t* address, int ipver) noexcept nogil:
    """An address replaced by its route's origin AS (0: no route), in its first 4 bytes."""
    cdef const Route* r = NULL
    cdef uint32_t origin = 0
    if routes is not None:
        r = route_of(routes.trie.nodes[ipver == 6], routes.trie.routes, address, 128 if ipver == 6 else 32)
        if r != NULL:
            origin = r.origin_as
    memset(address, 0, 16)
    memcpy(address, &origin, 4)


cdef inline void keyed_as_in_place(RouteTable routes, uint8_t route_as, FlowKey* key) noexcept nogil:
    """An AS-keyed record's key: the keyed addresses (route_as) replaced by their routes' origin
    AS (a lookup per packet, as the key needs; routes change between packets of a flow)."""
    if route_as & AS_SOURCE:
        as_in_place(routes, key.src, key.ipver)
    if route_as & AS_DESTINATION:
        as_in_place(routes, key.dst, key.ipver)


# What a flow's addresses matched when it started (the state of the route extension: its flows' routes).
cdef struct FlowRoute:
    uint8_t next_hop[16]
    uint32_t out_if
    uint32_t src_as
    uint32_t dst_as
    uint8_t src_length
    uint8_t dst_length


cdef void route_create(void* state, const Packet* pkt, const void* context) noexcept nogil:
    """A new flow's routes: the destination's (next hop, output interface, AS, prefix
    length) and the source's (AS, prefix length), from its first packet's addresses
    (context: the meter's RouteTrie, NULL: no routes)."""
    cdef FlowRoute* fr = <FlowRoute*>state
    cdef const RouteTrie* trie = <const RouteTrie*>context
    cdef int v = pkt.key.ipver == 6, bits = 128 if pkt.key.ipver == 6 else 32
    cdef const Route* r
    memset(fr, 0, sizeof(FlowRoute))
    if trie == NULL:
        return
    r = route_of(trie.nodes[v], trie.routes, pkt.key.dst, bits)
    if r != NULL:
        memcpy(fr.next_hop, r.next_hop, 16)
        fr.out_if = r.out_if
        fr.dst_as = r.origin_as
        fr.dst_length = r.length
    r = route_of(trie.nodes[v], trie.routes, pkt.key.src, bits)
    if r != NULL:
        fr.src_as = r.origin_as
        fr.src_length = r.length


cdef void route_fill(const void* state, FlowRecord* r, uint8_t* member) noexcept nogil:
    cdef const FlowRoute* route = <const FlowRoute*>state
    if route == NULL:
        return
    memcpy(r.next_hop, route.next_hop, 16)
    if r.direction != DIR_EGRESS:
        r.out_if = route.out_if
    r.src_as = route.src_as
    r.dst_as = route.dst_as
    r.src_length = route.src_length
    r.dst_length = route.dst_length


# The route lookup as a flow extension (extension.pxd), the meter's while it has routes.
cdef FlowExtension ROUTE_EXTENSION = FlowExtension(b"routes", sizeof(FlowRoute), route_create, NULL, route_fill,
                                                   NULL)   # (a flow keeps what it matched when it started)
