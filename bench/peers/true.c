/* bench/peers.py: the static binary the exec probe runs (exits 0 at once). */
int main(void) { return 0; }
