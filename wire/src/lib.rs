//! `dve-wire`: every frame DVE sends or receives, as zero-copy typed views over byte buffers
//! plus builders: Ethernet, FCoE and FIP, the FC-2 header, FCP-4 information units, link
//! services, the name server's common transport, SCSI CDBs and sense data, and a pcap writer.
