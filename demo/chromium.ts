/** Headless Chromium for the demo's end-to-end test and the browser bench: Debian's, never a download. */
export const CHROMIUM = process.env.ONEDP_CHROMIUM ?? '/usr/bin/chromium';

/**
 * The flags this machine needs: no sandbox (tests run as root), no GPU, and no background
 * connections (the network is closed; Chromium's attempts would fail noisily at every start).
 */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
