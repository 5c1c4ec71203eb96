export { startTestCore, createTestDatabase, killLocalReplicas, TEST_ADMIN_PASSWORD, type TestCore, type TestCoreOptions, type LogEntry } from './start-test-core.js';
export { TestClient, type TestResponse, type RequestOptions } from './client.js';
export { mockServices, type MockLogger } from './mock-services.js';
export { preparedDataDir, embeddedTemplate } from './template.js';
export { waitFor, waitForState } from './wait.js';
