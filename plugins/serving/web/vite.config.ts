import { aiplatRemote } from '@aiplat/plugin-sdk/vite';

export default aiplatRemote(import.meta.dirname);
