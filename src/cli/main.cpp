#include <asyncmq/cli.hpp>

int main(int argc, char** argv) { return asyncmq::run_cli(argc, argv); }
