// The test kit's polling helpers, under the names these tests import.
export { waitFor, waitForState } from '@aiplat/testing';
