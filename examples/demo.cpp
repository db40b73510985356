// Placeholder until the demo lands.
int main() { return 0; }
