/* Exported wrappers around DPDK's static inline functions, so Rust can call them. */
#include "shim.h"

uint16_t dve_shim_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
uint16_t dve_shim_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}
struct rte_mbuf *dve_shim_pktmbuf_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }
void dve_shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void *dve_shim_pktmbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t dve_shim_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t dve_shim_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
/* The next segment of a multi-segment packet, NULL for the last. */
struct rte_mbuf *dve_shim_pktmbuf_next(const struct rte_mbuf *m) { return m->next; }
char *dve_shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
int dve_shim_errno(void) { return rte_errno; }
