/* Socket user (a negative case): holds a listening TCP socket and a socketpair, then sleeps.
 * usage: sockuser SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

int main(int argc, char **argv)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0 };
	bind(l, (struct sockaddr *)&a, sizeof a);
	listen(l, 1);
	int sp[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	int s = argc > 1 ? atoi(argv[1]) : 5;
	for (int i = 0; i < s * 10; i++) usleep(100000);
	printf("sockets done\n");
	return 0;
}
