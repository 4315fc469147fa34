/* DPDK headers bindgen reads, and the shim's exported wrappers around DPDK's static inline
 * functions (bindgen cannot bind those directly). */
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_lcore.h>
#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>

uint16_t dve_shim_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t dve_shim_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *dve_shim_pktmbuf_alloc(struct rte_mempool *pool);
void dve_shim_pktmbuf_free(struct rte_mbuf *m);
void *dve_shim_pktmbuf_data(struct rte_mbuf *m);
uint16_t dve_shim_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t dve_shim_pktmbuf_pkt_len(const struct rte_mbuf *m);
struct rte_mbuf *dve_shim_pktmbuf_next(const struct rte_mbuf *m);
char *dve_shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int dve_shim_errno(void);
