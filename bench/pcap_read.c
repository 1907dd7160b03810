/* The floor of the benchmark: read a capture with libpcap and do nothing else.
 * pcap_next_ex, as tcpdump -w /dev/null or a C flow probe's read loop would; prints the
 * packet count so the bench can check that everything was read. */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    char err[PCAP_ERRBUF_SIZE];
    struct pcap_pkthdr *header;
    const u_char *data;
    unsigned long packets = 0, bytes = 0;
    int status;
    pcap_t *pcap;

    if (argc != 2) {
        fprintf(stderr, "usage: pcap_read FILE\n");
        return 2;
    }
    pcap = pcap_open_offline(argv[1], err);
    if (pcap == NULL) {
        fprintf(stderr, "pcap_read: %s\n", err);
        return 2;
    }
    while ((status = pcap_next_ex(pcap, &header, &data)) == 1) {
        packets++;
        bytes += header->caplen + data[0] * 0;   /* touch the packet, as a reader must */
    }
    if (status == -1) {
        fprintf(stderr, "pcap_read: %s\n", pcap_geterr(pcap));
        return 1;
    }
    printf("%lu\n", packets);
    return 0;
}
